"""The emulator's prediction nodes: one cloudml serving process per deployed model, started the
way Vertex AI starts a custom container (the container entrypoint with `AIP_*` variables, the
model fetched from `AIP_STORAGE_URI` in the GCS emulator). Its output becomes Cloud Logging
entries of the endpoint.

The process handling mirrors cloudml.emulators.aws.hosting.HostedModel (same start / health wait /
log shipping); the differences are the command, the variables and the health route.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from cloudml import httpclient
from cloudml.emulators.aws.hosting import free_port
from cloudml.httpclient import HTTPResult

LogSink = Callable[[list[str]], None]


class PredictionNode:
    """One serving process for one deployed model."""

    def __init__(self, root: Path, *, deployed_model_id: str, artifact_uri: str, container_env: dict[str, str],
                 predict_route: str, health_route: str, storage_host: str, project: str, sink: LogSink):
        self.deployed_model_id = deployed_model_id
        self.artifact_uri = artifact_uri
        self.folder = root / f"{deployed_model_id}-{secrets.token_hex(3)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "container.log"
        self.port = free_port()
        self.predict_route = predict_route or "/predict"
        self.health_route = health_route or "/health"
        self.env = {
            **container_env,
            # What Vertex AI sets for every prediction container.
            "AIP_HTTP_PORT": str(self.port),
            "AIP_PREDICT_ROUTE": self.predict_route,
            "AIP_HEALTH_ROUTE": self.health_route,
            "AIP_STORAGE_URI": artifact_uri,
            "AIP_DEPLOYED_MODEL_ID": deployed_model_id,
            "CLOUD_ML_PROJECT_ID": project,
            # Emulator plumbing: where "GCS" is, loopback only, local scratch folders.
            "STORAGE_EMULATOR_HOST": storage_host,
            "CLOUDML_HOST": "127.0.0.1",
            "CLOUDML_DOWNLOAD_DIR": str(self.folder / "model"),
            "CLOUDML_PACKAGE_DIR": str(self.folder / "package"),
            "CLOUDML_WORKERS": container_env.get("CLOUDML_WORKERS", "1"),
            "PYTHONUNBUFFERED": "1",
        }
        self._sink = sink
        self._shipped = 0
        self._ship_lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PredictionNode":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "CLOUDML_MODEL_DIR"))}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cloudml.serving.entrypoint"], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_healthy(self, timeout: float, stopping: threading.Event) -> str | None:
        """None once the health route answers 200; otherwise Vertex's words for why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stopping.is_set():
            self.ship_logs()
            if self.proc.poll() is not None:
                self.ship_logs()
                return f"Model server exited unexpectedly (exit code {self.proc.returncode})."
            if self._healthy():
                self.ship_logs()
                return None
            time.sleep(0.2)
        self.ship_logs()
        return f"Model server never became ready within {timeout:.0f}s: {self.health_route} did not answer 200."

    def _healthy(self) -> bool:
        try:
            return self.request("GET", self.health_route, timeout=2).status == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 60) -> HTTPResult:
        return httpclient.request(method, f"http://127.0.0.1:{self.port}{path}", body=body or None, headers=headers, timeout=timeout)

    def ship_logs(self) -> None:
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
                self._sink(lines)

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
