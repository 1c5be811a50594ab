"""The emulator's "instances": one serving container per online deployment (the shared
ServingProcess), started the way Azure ML starts a custom container: the registered model's files
mounted at AZUREML_MODEL_DIR (/var/azureml-app/azureml-models/<model>/<version>), the image's
entrypoint on the port it is given (PORT), probed on the readiness route the environment's
inference_config names. The environment's image runs as a real container when it is in the
workspace's emulated ACR; otherwise the host's cloudml runtime serves the downloaded files."""

from __future__ import annotations

import sys
from pathlib import Path

from cloudml.emulators.container import ContainerHost, Mount, RunSpec, readable
from cloudml.emulators.serving_process import ServingProcess

MODELS_ROOT = "/var/azureml-app/azureml-models"


class Container(ServingProcess):
    def __init__(self, root: Path, *, name: str, model: str, version: str, env: dict[str, str],
                 readiness_path: str = "/ready", scoring_path: str = "/score", image: str = "", containers: ContainerHost | None = None):
        super().__init__(root, name=name, env=env, image=image, containers=containers)
        self.model_dir = self.folder / "azureml-models" / model / version
        self.mounted_at = f"{MODELS_ROOT}/{model}/{version}"
        self.env.update({
            "AZUREML_MODEL_DIR": str(self.model_dir), "PORT": str(self.port), "CLOUDML_HOST": "127.0.0.1",
            "CLOUDML_PACKAGE_DIR": str(self.folder / "package"),
            # Other clouds' settings that may sit in the emulator's own environment.
            "SAGEMAKER_BIND_TO_PORT": "", "AIP_HTTP_PORT": "", "AIP_STORAGE_URI": "", "CLOUDML_MODEL_DIR": "",
        })
        self.health_path = readiness_path
        self.scoring_path = scoring_path

    def command(self, source: Path | None) -> list[str]:
        """The image's entrypoint; it finds the model through AZUREML_MODEL_DIR as in Azure."""
        return [sys.executable, "-m", "cloudml.serving.entrypoint"]

    def run_spec(self) -> RunSpec:
        env = {k: v for k, v in self.env.items() if v and k != "CLOUDML_PACKAGE_DIR"}
        return RunSpec(env={**env, "AZUREML_MODEL_DIR": self.mounted_at}, mounts=[Mount(readable(self.model_dir), self.mounted_at)])

    def wait_ready(self, timeout: float) -> str | None:
        """None once the readiness route answers 200; otherwise Azure's reason why not."""
        reason = self.wait_healthy(timeout)
        if reason is None:
            return None
        if self.exited():
            return (f"ResourceNotReady: User container has crashed or terminated ({reason}). "
                    "Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-resourcenotready")
        return f"ResourceNotReady: the liveness/readiness probe failed: {reason}. Please see https://aka.ms/oe-tsg#error-resourcenotready"
