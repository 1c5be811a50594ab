"""The emulator's SageMaker "instances": one cloudml serving process per endpoint configuration,
started from the model.tar.gz the endpoint's Model points at, the way a SageMaker container would
be. Their output goes to the endpoint's CloudWatch log group."""

from __future__ import annotations

import secrets
from pathlib import Path

from cloudml.emulators.serving_process import LogSink, ServingProcess, free_port

__all__ = ["HostedModel", "LogSink", "free_port"]


class HostedModel(ServingProcess):
    """One serving process for one (endpoint, endpoint config)."""

    health_path = "/ping"

    def __init__(self, root: Path, *, endpoint: str, config: str, variant: str, archive: bytes, env: dict[str, str], sink: LogSink):
        super().__init__(root / endpoint, name=config, env=env, sink=sink, stream=f"{variant}/i-{secrets.token_hex(8)}")
        self.endpoint = endpoint
        self.config = config
        self.variant = variant
        (self.folder / "model.tar.gz").write_bytes(archive)

    def start(self, source: Path | None = None) -> HostedModel:
        # What SageMaker runs: `<image> serve` with the model unpacked; here the cloudml runtime.
        self.env["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
        super().start(source or self.folder / "model.tar.gz")
        return self
