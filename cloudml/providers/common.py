"""Small pieces every cloud provider uses, free of any SDK import."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from cloudml.errors import DeployFailed
from cloudml.progress import Progress

T = TypeVar("T")


class WaitTimedOut(DeployFailed):
    """The cloud is still working past `wait_timeout`: what this run made stays, so the next run
    resumes the wait instead of starting over."""


def short_hash(*parts: Any) -> str:
    """A stable sha256 hex of JSON-able parts (settings, names) for resource names and no-op checks."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def container_error(message: str) -> str:
    """The serving container's own error text out of a cloud's wrapper (`{"error": ...}`)."""
    try:
        return json.loads(message).get("error", message)
    except (ValueError, AttributeError):
        return message


def tag_version(value: str | None) -> int | None:
    """The model version a tag or label holds; None when it holds none (or not a number)."""
    return int(value) if value and value.isdigit() else None


def artifact_prefix(prefix: str, name: str) -> str:
    """Where a deployment's model artifacts lie in a bucket or container: `<prefix>/<name>/`
    (no leading slash when the prefix is empty)."""
    return f"{prefix}/{name}/".lstrip("/")


def version_tuple(text: str) -> tuple[int, ...]:
    """"2.16.1" -> (2, 16, 1); "2.21.0rc1" -> (2, 21, 0): numeric parts until the first non-numeric one."""
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def wait_while_busy(progress: Progress, goal: str, read: Callable[[], tuple[T | None, str]], *, busy: Collection[str],
                    what: str, timeout: float, interval: float, hint: str) -> T:
    """Poll `read()` -> (resource or None, state) every `interval` seconds until the state is not
    in `busy`, showing it as progress; returns the resource. A resource that vanishes is a
    DeployFailed; past `timeout` a WaitTimedOut (with `hint`) leaves the cloud working."""
    deadline = time.monotonic() + timeout
    with progress.step(f"waiting {goal}") as step:
        while True:
            resource, state = read()
            if resource is None:
                raise DeployFailed(f"{what} disappeared while waiting {goal}")
            step.update(f"waiting {goal}: {state}")
            if state not in busy:
                return resource
            if time.monotonic() > deadline:
                raise WaitTimedOut(f"{what} is still {state} after {timeout:.0f}s", hint=hint)
            time.sleep(interval)
