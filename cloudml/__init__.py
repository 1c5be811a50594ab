"""cloudml: deploy TensorFlow/Keras models to a local endpoint, SageMaker, Vertex AI or Azure ML.

    from cloudml import DeploymentSpec, get_deployer

    deployer = get_deployer("local")
    result = deployer.deploy(DeploymentSpec(name="mnist-cnn", model="cnn.h5"))
    deployer.predict("mnist-cnn", instances=[[0.0] * 784])

Names are imported on first use, so `import cloudml` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Deployer": "cloudml.providers.base",
    "ProviderOptions": "cloudml.providers.base",
    "get_deployer": "cloudml.providers.registry",
    "provider_names": "cloudml.providers.registry",
    "DeploymentSpec": "cloudml.spec",
    "Resources": "cloudml.spec",
    "load_spec": "cloudml.config",
    "Deployment": "cloudml.results",
    "DeploymentStatus": "cloudml.results",
    "DeployResult": "cloudml.results",
    "Prediction": "cloudml.results",
    "package_model": "cloudml.packaging",
    "PackagedModel": "cloudml.packaging",
    "Progress": "cloudml.progress",
    "CloudMLError": "cloudml.errors",
    "ConfigError": "cloudml.errors",
    "ModelError": "cloudml.errors",
    "DeploymentNotFound": "cloudml.errors",
    "DeployFailed": "cloudml.errors",
    "PredictionRejected": "cloudml.errors",
    "EndpointUnavailable": "cloudml.errors",
    "ProviderUnavailable": "cloudml.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from cloudml.config import load_spec
    from cloudml.errors import (
        CloudMLError,
        ConfigError,
        DeployFailed,
        DeploymentNotFound,
        EndpointUnavailable,
        ModelError,
        PredictionRejected,
        ProviderUnavailable,
    )
    from cloudml.packaging import PackagedModel, package_model
    from cloudml.progress import Progress
    from cloudml.providers.base import Deployer, ProviderOptions
    from cloudml.providers.registry import get_deployer, provider_names
    from cloudml.results import Deployment, DeploymentStatus, DeployResult, Prediction
    from cloudml.spec import DeploymentSpec, Resources
