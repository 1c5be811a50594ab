"""The emulator's "instances": one cloudml serving process per online deployment, started the way
Azure ML starts a custom container: the registered model's files downloaded into
AZUREML_MODEL_DIR, the image's entrypoint (here the cloudml runtime) on the port the
environment's inference_config names, probed on its readiness route."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudml import httpclient
from cloudml.emulators.aws.hosting import free_port
from cloudml.httpclient import HTTPResult


class Container:
    def __init__(self, folder: Path, *, env: dict[str, str], readiness_path: str = "/ready", scoring_path: str = "/score"):
        self.folder = folder
        self.model_dir = folder / "azureml-models"
        self.log_path = folder / "container.log"
        self.env = env
        self.readiness_path = readiness_path
        self.scoring_path = scoring_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Container":
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", "AZUREML_MODEL_DIR": str(self.model_dir),
               "PORT": str(self.port), "CLOUDML_HOST": "127.0.0.1", "CLOUDML_PACKAGE_DIR": str(self.folder / "package")}
        for variable in ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "CLOUDML_MODEL_DIR"):
            env.pop(variable, None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cloudml.serving.entrypoint"], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float) -> str | None:
        """None once the readiness route answers 200; otherwise Azure's reason why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return (f"ResourceNotReady: User container has crashed or terminated: the container exited with code "
                        f"{self.proc.returncode}. Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-resourcenotready")
            try:
                if self.request("GET", self.readiness_path, timeout=2).status == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.2)
        return f"ResourceNotReady: the readiness probe {self.readiness_path} did not succeed within {timeout:.0f}s (liveness probe failed)"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60) -> HTTPResult:
        return httpclient.request(method, f"http://127.0.0.1:{self.port}{path}", body=body, headers=headers, timeout=timeout)

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def stop(self, *, remove: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
