"""`cloudml emulator <cloud>`: run one emulator server in this process until Ctrl-C or SIGTERM,
after printing the variables that point clients at it (and writing them to a ready file, which is
how EmulatorProcess knows it is up)."""

from __future__ import annotations

import importlib.util
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cloudml.errors import ConfigError, ProviderUnavailable


class EmulatorServer(Protocol):
    @property
    def url(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> Any: ...


def require_modules(modules: dict[str, str], *, extra: str, title: str) -> None:
    """`modules` maps importable names to the distributions that bring them."""
    missing = [dist for module, dist in modules.items() if not _importable(module)]
    if missing:
        raise ProviderUnavailable(f"the {title} emulator needs {', '.join(missing)}", hint=f"pip install 'cloudml[{extra}]'")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-installed one
        return False


def serve_until_stopped(server: EmulatorServer, *, address: str, ready_file: Path | None,
                        announce: Callable[[], tuple[list[str], dict[str, str], dict[str, Any]]]) -> int:
    """Start `server`; `announce()` runs once it listens and returns (lines to print, the client
    environment to export, more fields for the ready file)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start()
    except OSError as exc:
        server.stop()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}", hint="pick another --port (0 for any free one)") from None
    except BaseException:
        server.stop()
        raise
    try:
        lines, env, extra = announce()
        for line in lines:
            print(line, flush=True)
        for key, value in env.items():
            print(f"  export {key}={value}", flush=True)
        if ready_file is not None:
            ready_file.write_text(json.dumps({"url": server.url, "env": env, **extra}))
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
    return 0
