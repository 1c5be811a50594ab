"""The emulator's SageMaker "instances": one serving container per endpoint configuration,
started from the model.tar.gz the endpoint's Model points at, the way a SageMaker container is:
the Model's image (when it is in the emulator's ECR) run as `<image> serve` with the archive
unpacked at /opt/ml/model, or else the host's cloudml runtime on the archive. Their output goes
to the endpoint's CloudWatch log group."""

from __future__ import annotations

import secrets
import tarfile
from pathlib import Path

from cloudml.emulators.container import ContainerHost, Mount, RunSpec, readable
from cloudml.emulators.serving_process import LogSink, ServingProcess, free_port

__all__ = ["HostedModel", "LogSink", "free_port"]


class HostedModel(ServingProcess):
    """One serving container for one (endpoint, endpoint config)."""

    health_path = "/ping"

    def __init__(self, root: Path, *, endpoint: str, config: str, variant: str, archive: bytes, env: dict[str, str], sink: LogSink,
                 image: str = "", containers: ContainerHost | None = None):
        super().__init__(root / endpoint, name=config, env=env, sink=sink, stream=f"{variant}/i-{secrets.token_hex(8)}",
                         image=image, containers=containers)
        self.endpoint = endpoint
        self.config = config
        self.variant = variant
        (self.folder / "model.tar.gz").write_bytes(archive)

    def run_spec(self) -> RunSpec:
        # SageMaker unpacks model.tar.gz into /opt/ml/model and runs `<image> serve`.
        model = self.folder / "model"
        model.mkdir(exist_ok=True)
        with tarfile.open(self.folder / "model.tar.gz") as tar:
            tar.extractall(model, filter="data")  # nothing outside, no links out, no devices
        spec = super().run_spec()
        return RunSpec(args=["serve"], env=spec.env, mounts=[Mount(readable(model), "/opt/ml/model")])

    def start(self, source: Path | None = None) -> HostedModel:
        self.env["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
        super().start(source or self.folder / "model.tar.gz")
        return self
