"""`AwsEmulator`: the AWS emulator in its own process, for tests and scripts.

    with AwsEmulator() as aws:
        os.environ.update(aws.env)          # boto3 and `cloudml --provider aws` now use it
        aws.refuse_next("CreateEndpoint", code="ResourceLimitExceeded")
"""

from __future__ import annotations

from pathlib import Path

from cloudml.emulators.aws.server import BUCKET, ROLE_ARN, client_env
from cloudml.emulators.process import EmulatorProcess


class AwsEmulator(EmulatorProcess):
    cloud = "aws"
    title = "AWS"

    def __init__(self, *, port: int = 0, region: str = "us-east-1", provisioning_delay: float = 1.0,
                 health_timeout: float = 180.0, log_path: Path | None = None):
        super().__init__(port=port, log_path=log_path)
        self.region = region
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.role_arn = ROLE_ARN
        self.bucket = BUCKET

    def command_options(self) -> list[str]:
        return ["--region", self.region, "--provisioning-delay", str(self.provisioning_delay),
                "--health-timeout", str(self.health_timeout)]

    @property
    def registry_host(self) -> str | None:
        """The emulated ECR's registry (what GetAuthorizationToken's proxyEndpoint names); None
        when docker-registry is not installed."""
        return self.ready.get("registry")

    def expire_registry_tokens(self) -> None:
        """Every ECR authorization token issued so far stops working, as after its 12 hours."""
        self._call("POST", "registry/expire-tokens")

    @property
    def env(self) -> dict[str, str]:
        """Variables that point boto3 and the aws provider at this emulator."""
        if self.url is None:
            raise RuntimeError("the AWS emulator is not started")
        return client_env(self.url, region=self.region)
