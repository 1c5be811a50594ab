"""`GcpEmulator`: the Vertex AI + GCS emulator in its own process, for tests and scripts.

    with GcpEmulator() as gcp:
        os.environ.update(gcp.env)          # google-cloud clients and `cloudml -p gcp` now use it
        gcp.refuse_next("DeployModel", status="RESOURCE_EXHAUSTED")
"""

from __future__ import annotations

from pathlib import Path

from cloudml.emulators.gcp.server import LOCATION, PROJECT
from cloudml.emulators.gcp.vertex import CODES
from cloudml.emulators.process import EmulatorProcess


class GcpEmulator(EmulatorProcess):
    cloud = "gcp"
    title = "GCP"

    def __init__(self, *, port: int = 0, project: str = PROJECT, location: str = LOCATION, provisioning_delay: float = 1.0,
                 health_timeout: float = 180.0, log_path: Path | None = None):
        super().__init__(port=port, log_path=log_path)
        self.project = project
        self.location = location
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout

    def command_options(self) -> list[str]:
        return ["--project", self.project, "--location", self.location,
                "--provisioning-delay", str(self.provisioning_delay), "--health-timeout", str(self.health_timeout)]

    @property
    def storage_url(self) -> str | None:
        """The GCS emulator's address (what STORAGE_EMULATOR_HOST holds)."""
        return self.ready.get("storage_url")

    @property
    def key_file(self) -> str:
        """A service-account key file whose tokens come from the emulator: `-o credentials=<it>`
        (or GOOGLE_APPLICATION_CREDENTIALS) authenticates as against Google, Artifact Registry included."""
        return self.ready["key_file"]

    @property
    def registry_host(self) -> str | None:
        """The emulated `LOCATION-docker.pkg.dev` (CLOUDML_GCP_REGISTRY_HOST); None without docker-registry."""
        return self.env.get("CLOUDML_GCP_REGISTRY_HOST")

    def refuse_next(self, action: str, *, status: str = "INTERNAL", message: str | None = None, times: int = 1) -> None:  # type: ignore[override]
        """Make the next `times` calls of `action` (UploadModel, DeployModel, Predict, ...) fail
        with the canonical error `status` (RESOURCE_EXHAUSTED, PERMISSION_DENIED, ...)."""
        if status not in CODES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(sorted(CODES))}")
        super().refuse_next(action, code=status, status=CODES[status][1], times=times,
                            message=message or f"The service refused {action} (fault injected by the cloudml emulator).")
