"""The emulator's "instances": one cloudml serving process per endpoint configuration, started
from the model.tar.gz the endpoint's Model points at, the way a SageMaker container would be.
Their output goes to the endpoint's CloudWatch log group."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from cloudml import httpclient
from cloudml.httpclient import HTTPResult

LogSink = Callable[[str, list[str]], None]  # (stream name, lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HostedModel:
    """One serving process for one (endpoint, endpoint config)."""

    def __init__(self, root: Path, *, endpoint: str, config: str, variant: str, archive: bytes, env: dict[str, str], sink: LogSink):
        self.endpoint = endpoint
        self.config = config
        self.variant = variant
        self.folder = root / endpoint / f"{config}-{secrets.token_hex(3)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "model.tar.gz").write_bytes(archive)
        self.log_path = self.folder / "container.log"
        self.stream = f"{variant}/i-{secrets.token_hex(8)}"
        self.env = env
        self.port = free_port()
        self._sink = sink
        self._shipped = 0
        self._ship_lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HostedModel":
        # What SageMaker runs: `<image> serve` with the model unpacked; here the cloudml runtime.
        command = [
            sys.executable, "-m", "cloudml", "serve", str(self.folder / "model.tar.gz"),
            "--host", "127.0.0.1", "--port", str(self.port), "--package-dir", str(self.folder / "package"),
        ]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_healthy(self, timeout: float) -> str | None:
        """None once /ping answers 200; otherwise why it did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ship_logs()
            if self.proc.poll() is not None:
                self.ship_logs()
                return f"the container exited with code {self.proc.returncode}"
            if self._ping():
                self.ship_logs()
                return None
            time.sleep(0.2)
        self.ship_logs()
        return f"the container did not answer /ping within {timeout:.0f}s"

    def _ping(self) -> bool:
        try:
            return self.request("GET", "/ping", timeout=2).status == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 60) -> HTTPResult:
        return httpclient.request(method, f"http://127.0.0.1:{self.port}{path}", body=body or None, headers=headers, timeout=timeout)

    def ship_logs(self) -> None:
        """Send the container's new output lines to CloudWatch."""
        with self._ship_lock:
            try:
                with self.log_path.open("rb") as handle:
                    handle.seek(self._shipped)
                    data = handle.read()
            except OSError:
                return
            complete = data.rfind(b"\n") + 1
            if not complete:
                return
            self._shipped += complete
            lines = data[:complete].decode(errors="replace").splitlines()
            if lines:
                self._sink(self.stream, lines)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ship_logs()
        shutil.rmtree(self.folder, ignore_errors=True)
