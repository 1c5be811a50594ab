"""Google Vertex AI online prediction endpoints, through google-cloud-aiplatform and google-cloud-storage."""

from cloudml.providers.gcp.deployer import VertexDeployer
from cloudml.providers.gcp.options import GcpOptions

__all__ = ["VertexDeployer", "GcpOptions"]
