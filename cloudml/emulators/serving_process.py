"""An emulated cloud's "container": one real `cloudml serve` process started from the artifact the
cloud would hand its container (a model.tar.gz, a SavedModel folder, a packaged model folder).
Every emulator (aws, gcp, azure) runs its endpoints' replicas with this, so predictions are real
and a model that cannot load fails the way it would in the cloud: the process exits or never
gets healthy, and its output is the container log."""

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
from collections.abc import Callable
from pathlib import Path

from cloudml import httpclient
from cloudml.httpclient import HTTPResult

LogSink = Callable[[str, list[str]], None]  # (stream name, new lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServingProcess:
    """A serving process in its own folder under `root`, listening on a free loopback port.

    `source` is what `cloudml serve` loads; when it is None the caller fills `folder` first
    (e.g. writes the downloaded artifact there) and passes the path to `start(source=...)`.
    `env` is the container environment the cloud would set (AIP_*, AZUREML_MODEL_DIR, ...).
    New output lines go to `sink(stream, lines)` each time `ship_logs` runs.
    """

    health_path = "/ping"

    def __init__(self, root: Path, *, name: str, env: dict[str, str] | None = None,
                 sink: LogSink | None = None, stream: str | None = None):
        self.folder = root / f"{name}-{secrets.token_hex(3)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "container.log"
        self.stream = stream or f"i-{secrets.token_hex(8)}"
        self.env = dict(env or {})
        self.port = free_port()
        self._sink = sink
        self._shipped = 0
        self._ship_lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, source: Path | None) -> list[str]:
        """What the container runs: `cloudml serve SOURCE` unless a cloud starts it otherwise."""
        return [
            sys.executable, "-m", "cloudml", "serve", str(source),
            "--host", "127.0.0.1", "--port", str(self.port), "--package-dir", str(self.folder / "package"),
        ]

    def start(self, source: Path | None = None) -> ServingProcess:
        command = self.command(source)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_healthy(self, timeout: float, stopping: threading.Event | None = None) -> str | None:
        """None once the health route answers 200; otherwise why it did not (or that the
        emulator is `stopping`)."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stopping and stopping.is_set()):
            self.ship_logs()
            if self.proc.poll() is not None:
                self.ship_logs()
                return f"the container exited with code {self.proc.returncode}"
            if self.healthy():
                self.ship_logs()
                return None
            time.sleep(0.2)
        self.ship_logs()
        return f"the container did not answer {self.health_path} within {timeout:.0f}s"

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def healthy(self) -> bool:
        try:
            return self.request("GET", self.health_path, timeout=2).status == 200
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 60) -> HTTPResult:
        return httpclient.request(method, f"{self.url}{path}", body=body or None, headers=headers, timeout=timeout)

    def log_lines(self) -> list[str]:
        """The whole container output so far."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def ship_logs(self) -> None:
        """Hand the container's new complete output lines to the sink (the cloud's log service)."""
        if self._sink is None:
            return
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

    def stop(self, *, keep_files: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ship_logs()
        if not keep_files:
            shutil.rmtree(self.folder, ignore_errors=True)
