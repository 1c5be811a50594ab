"""The emulator's prediction nodes: one serving container per deployed model, started the way
Vertex AI starts a custom container (the image's entrypoint with `AIP_*` variables; it fetches
the model from `AIP_STORAGE_URI` in the GCS emulator itself). The Model's image runs as a real
container when it is in the emulator's Artifact Registry, otherwise the host's cloudml runtime
does. Its output becomes Cloud Logging entries of the endpoint."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cloudml.emulators.container import ContainerHost, RunSpec
from cloudml.emulators.serving_process import ServingProcess

LogSink = Callable[[list[str]], None]


class PredictionNode(ServingProcess):
    """One serving process for one deployed model."""

    def __init__(self, root: Path, *, deployed_model_id: str, artifact_uri: str, container_env: dict[str, str],
                 predict_route: str, health_route: str, storage_host: str, project: str, sink: LogSink, prebuilt: bool = False,
                 image: str = "", containers: ContainerHost | None = None):
        super().__init__(root, name=deployed_model_id, sink=lambda _stream, lines: sink(lines), image=image, containers=containers)
        self.deployed_model_id = deployed_model_id
        self.prebuilt = prebuilt  # a Vertex prebuilt TensorFlow image, which serves a plain SavedModel folder
        self.artifact_uri = artifact_uri
        self.predict_route = predict_route or "/predict"
        self.health_path = health_route or "/health"
        self.env.update({
            **container_env,
            # What Vertex AI sets for every prediction container.
            "AIP_HTTP_PORT": str(self.port),
            "AIP_PREDICT_ROUTE": self.predict_route,
            "AIP_HEALTH_ROUTE": self.health_path,
            "AIP_STORAGE_URI": artifact_uri,
            "AIP_DEPLOYED_MODEL_ID": deployed_model_id,
            "CLOUD_ML_PROJECT_ID": project,
            # Emulator plumbing: where "GCS" is, loopback only, local scratch folders.
            "STORAGE_EMULATOR_HOST": storage_host,
            "CLOUDML_HOST": "127.0.0.1",
            "CLOUDML_DOWNLOAD_DIR": str(self.folder / "model"),
            "CLOUDML_PACKAGE_DIR": str(self.folder / "package"),
            "CLOUDML_WORKERS": container_env.get("CLOUDML_WORKERS", "1"),
        })

    def command(self, source: Path | None) -> list[str]:
        # The container's own entrypoint: it reads the AIP_* variables and fetches the model.
        if self.prebuilt:
            return [sys.executable, "-m", "cloudml.emulators.gcp.tfserving"]
        return [sys.executable, "-m", "cloudml.serving.entrypoint"]

    def run_spec(self) -> RunSpec:
        # The container downloads the model itself, into its own writable /tmp.
        env = {k: v for k, v in self.env.items() if v and k != "CLOUDML_PACKAGE_DIR"}
        return RunSpec(env={**env, "CLOUDML_DOWNLOAD_DIR": "/tmp/cloudml-model"})

    def start(self, source: Path | None = None) -> PredictionNode:
        # The emulator's own environment must not leak a model location into the container.
        for key in [k for k in os.environ if k.startswith("AIP_") or k == "CLOUDML_MODEL_DIR"]:
            self.env.setdefault(key, "")
        super().start(source)
        return self

    def wait_healthy(self, timeout: float, stopping: threading.Event | None = None) -> str | None:
        """None once the health route answers 200; otherwise Vertex's words for why not."""
        reason = super().wait_healthy(timeout, stopping)
        if reason is None:
            return None
        if self.exited():
            return f"Model server exited unexpectedly (exit code {self.proc.returncode if self.proc else None})."
        return f"Model server never became ready within {timeout:.0f}s: {self.health_path} did not answer 200."
