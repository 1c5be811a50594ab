"""An emulator in its own process (`cloudml emulator <cloud>`), for tests and scripts.

Each cloud's handle (AwsEmulator, ...) subclasses `EmulatorProcess`: it names the CLI command and
its options and says which environment variables point that cloud's SDK at the emulator. The
control routes under `/_cloudml/` (faults, fleet, calls) are the same on every emulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from cloudml import httpclient


class EmulatorProcess:
    cloud: ClassVar[str]  # the `cloudml emulator <cloud>` command
    title: ClassVar[str]  # for messages: "AWS", "Vertex AI", ...

    def __init__(self, *, port: int = 0, log_path: Path | None = None):
        self.port = port
        self.log_path = log_path
        self.url: str | None = None
        self.ready: dict[str, Any] = {}  # what the emulator wrote to its ready file (url, env, ...)
        self._proc: subprocess.Popen | None = None
        self._scratch: Path | None = None

    def command_options(self) -> list[str]:
        """Options after `cloudml emulator <cloud> --host 127.0.0.1 --port N`."""
        return []

    @property
    def env(self) -> dict[str, str]:
        """Variables that point the cloud's SDK and cloudml's provider at this emulator."""
        if self.url is None:
            raise RuntimeError(f"the {self.title} emulator is not started")
        return dict(self.ready.get("env", {}))

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        self._scratch = Path(tempfile.mkdtemp(prefix=f"cloudml-{self.cloud}-emu-"))
        ready = self._scratch / "ready.json"
        log_path = self.log_path or self._scratch / "emulator.log"
        command = [
            sys.executable, "-m", "cloudml", "emulator", self.cloud, "--host", "127.0.0.1", "--port", str(self.port),
            *self.command_options(), "--ready-file", str(ready),
        ]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.title} emulator did not start; its log:\n{Path(log_path).read_text()[-4000:]}")
            time.sleep(0.05)
        self.ready = json.loads(ready.read_text())
        self.url = self.ready["url"]
        return self

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        result = httpclient.request(method, f"{self.url}/_cloudml/{route}", payload=payload, timeout=30)
        if result.status != 200:
            raise RuntimeError(f"the {self.title} emulator refused {method} /_cloudml/{route}: {result.status} {result.body[:300]!r}")
        return result.json()

    def refuse_next(self, action: str, *, code: str = "InternalFailure", message: str | None = None, status: int = 400, times: int = 1) -> None:
        """Make the next `times` calls of `action` fail with `status` and the cloud's error `code`."""
        fault = {"action": action, "code": code, "status": status, "times": times}
        if message:
            fault["message"] = message
        self._call("POST", "faults", fault)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def fleet(self) -> list[dict[str, Any]]:
        """The serving processes behind the emulated endpoints."""
        return self._call("GET", "fleet")

    def calls(self, *, clear: bool = False) -> list[dict[str, str]]:
        """Every API call so far, as the cloud's permission it needs plus the caller's user agent."""
        return self._call("DELETE" if clear else "GET", "calls")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self.url = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
