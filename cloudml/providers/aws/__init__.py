"""AWS SageMaker real-time endpoints, through boto3 and sagemaker-core."""

from cloudml.providers.aws.deployer import SageMakerDeployer
from cloudml.providers.aws.options import AwsOptions

__all__ = ["SageMakerDeployer", "AwsOptions"]
