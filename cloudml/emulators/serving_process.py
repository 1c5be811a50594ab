"""An emulated cloud's "container". When the image the cloud was told to run lives in the
emulator's own registry and a container engine is present, it is that image, run as a real
container (emulators/container.py) with the model delivered as the cloud delivers it; otherwise
one real `cloudml serve` process on the host, started from the artifact the cloud would hand its
container (a model.tar.gz, a SavedModel folder, a packaged model folder), and the container log
says so. Every emulator (aws, gcp, azure) runs its endpoints' replicas with this, so predictions
are real and a model that cannot load fails the way it would in the cloud: the process exits or
never gets healthy, and its output is the container log."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cloudml import httpclient
from cloudml.emulators.container import ContainerHost, RunSpec
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
    New output lines go to `sink(stream, lines)` each time `ship_logs` runs. `image` is the image
    the cloud was told to run; `containers` (the emulator's engine) runs it when it can.
    """

    health_path = "/ping"

    def __init__(self, root: Path, *, name: str, env: dict[str, str] | None = None,
                 sink: LogSink | None = None, stream: str | None = None, image: str = "", containers: ContainerHost | None = None):
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
        self.image = image
        self.containers = containers
        self.container: str | None = None  # the engine's name of the running container

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, source: Path | None) -> list[str]:
        """What the container runs: `cloudml serve SOURCE` unless a cloud starts it otherwise."""
        return [
            sys.executable, "-m", "cloudml", "serve", str(source),
            "--host", "127.0.0.1", "--port", str(self.port), "--package-dir", str(self.folder / "package"),
        ]

    def run_spec(self) -> RunSpec:
        """How the cloud starts its container from the image: arguments, environment, mounts."""
        return RunSpec(env={k: v for k, v in self.env.items() if v})

    def start(self, source: Path | None = None) -> ServingProcess:
        containers = self.containers if self.image else None
        why_not = containers.why_not(self.image) if containers is not None else None
        if containers is not None and why_not is None:
            try:
                spec = self.run_spec()
                self.container, command = containers.run_command(self.folder.name, self.image, spec, self.folder)
            except (OSError, ValueError, tarfile.TarError) as exc:
                # The cloud fails such a container before it starts; here it "exits" at once.
                why_not = f"cloudml emulator: cannot hand the model to the container: {exc}"
                command = [sys.executable, "-c", "raise SystemExit(1)"]
            env = containers.engine_env(self.folder)
        else:
            command = self.command(source)
            env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            if why_not:
                log.write(f"{why_not}\n".encode())
                log.flush()
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
        if self.container is not None and self.containers is not None:
            self.containers.stop(self.container)
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
