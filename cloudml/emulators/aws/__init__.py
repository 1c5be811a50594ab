"""An offline AWS for the `aws` provider: moto plus emulated SageMaker hosting that serves real
predictions. `cloudml emulator aws` runs it; `AwsEmulator` starts it from Python or pytest."""

from cloudml.emulators.aws.process import AwsEmulator
from cloudml.emulators.aws.server import BUCKET, ROLE_ARN, client_env

__all__ = ["AwsEmulator", "BUCKET", "ROLE_ARN", "client_env"]
