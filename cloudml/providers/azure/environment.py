"""Offline checks and the serving environment: which managed online endpoint SKUs exist, names
Azure accepts, and the cloudml runtime as a custom container environment."""

from __future__ import annotations

import difflib
import re

from cloudml.errors import ConfigError

# Managed online endpoint SKUs (learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list).
INSTANCE_TYPES = (
    "Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2",
    "Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2", "Standard_F48s_v2",
    "Standard_F64s_v2", "Standard_F72s_v2", "Standard_E2s_v3", "Standard_E4s_v3", "Standard_E8s_v3", "Standard_E16s_v3",
    "Standard_E32s_v3", "Standard_E48s_v3", "Standard_E64s_v3", "Standard_NC4as_T4_v3", "Standard_NC6s_v3",
    "Standard_NC8as_T4_v3", "Standard_NC12s_v3", "Standard_NC16as_T4_v3", "Standard_NC24s_v3", "Standard_NC64as_T4_v3",
    "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4", "Standard_ND40rs_v2",
)
# Endpoint and deployment names: 3-32 characters, a letter first, letters/digits/hyphens, no
# hyphen last. Endpoint names are also part of the scoring host name, so unique per region.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
PORT = 8080
INFERENCE_CONFIG = {
    "liveness_route": {"port": PORT, "path": "/"},
    "readiness_route": {"port": PORT, "path": "/ready"},
    "scoring_route": {"port": PORT, "path": "/score"},
}


def check_instance_type(instance_type: str) -> None:
    if instance_type in INSTANCE_TYPES:
        return
    lowered = {t.lower(): t for t in INSTANCE_TYPES}
    close = difflib.get_close_matches(instance_type.lower(), list(lowered), n=3, cutoff=0.6)
    suggestion = f"did you mean {', '.join(lowered[c] for c in close)}? " if close else ""
    raise ConfigError(
        f"{instance_type!r} is not an Azure ML managed online endpoint instance type",
        hint=f"{suggestion}common CPU choices: Standard_DS2_v2, Standard_DS3_v2, Standard_F4s_v2; GPU: Standard_NC4as_T4_v3 "
             "(the list: learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list)",
    )


def check_endpoint_name(name: str) -> None:
    if not ENDPOINT_NAME.match(name) or "--" in name:
        raise ConfigError(
            f"{name!r} cannot name an Azure ML online endpoint",
            hint="use 3-32 letters, digits and hyphens, starting with a letter and not ending with a hyphen; "
                 "it is part of the scoring host name, so it must also be unique in the region",
        )


def serving_environment(image_uri: str):
    """The cloudml runtime image as an Azure ML custom container environment."""
    from azure.ai.ml.entities import Environment

    return Environment(image=image_uri, inference_config=INFERENCE_CONFIG,
                       description="cloudml serving runtime (custom container)")
