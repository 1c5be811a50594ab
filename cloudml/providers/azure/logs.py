"""A deployment's container log through `online_deployments.get_logs` (what `az ml
online-deployment get-logs` shows)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from cloudml.providers.azure.session import azure_errors


def tail(ml: Any, endpoint: str, deployment: str, lines: int) -> list[str]:
    with azure_errors(f"reading the logs of deployment {deployment}"):
        content = ml.online_deployments.get_logs(deployment, endpoint, lines=lines)
    return (content or "").splitlines()


def follow(ml: Any, endpoint: str, deployment: str, *, first: list[str], interval: float) -> Iterator[str]:
    """getLogs returns a tail, not a cursor: follow by diffing successive tails."""
    yield from first
    seen = first
    while True:
        time.sleep(interval)
        latest = tail(ml, endpoint, deployment, 1000)
        yield from latest[_overlap(seen, latest):]
        seen = latest


def _overlap(seen: list[str], latest: list[str]) -> int:
    """How many leading lines of `latest` were already yielded (the end of `seen`)."""
    for size in range(min(len(seen), len(latest)), 0, -1):
        if seen[-size:] == latest[:size]:
            return size
    return 0
