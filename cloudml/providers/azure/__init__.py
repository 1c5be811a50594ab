"""Azure ML managed online endpoints, through azure-ai-ml and azure-identity."""

from cloudml.providers.azure.deployer import AzureMLDeployer
from cloudml.providers.azure.options import AzureOptions

__all__ = ["AzureMLDeployer", "AzureOptions"]
