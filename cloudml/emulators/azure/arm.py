"""What every part of the Azure emulator shares: the emulated workspace's names, ARM-shaped errors
and responses, long-running operations, and the in-memory resource store."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudml.emulators.azure.hosting import Container

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "cloudml-rg"
WORKSPACE = "cloudml-ws"
LOCATION = "eastus"
CLOUD_NAME = "CloudMLEmulator"
DATASTORE = "workspaceblobstore"
PROVIDER = "Microsoft.MachineLearningServices"
PROBE = {"failureThreshold": 30, "successThreshold": 1, "timeout": "PT2S", "period": "PT10S", "initialDelay": "PT10S"}
# What Azure ML fills in for a managed deployment's unset settings.
DEPLOYMENT_DEFAULTS = {
    "scaleSettings": {"scaleType": "Default"}, "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1},
    "livenessProbe": PROBE, "readinessProbe": {**PROBE, "failureThreshold": 3}, "appInsightsEnabled": False,
    "egressPublicNetworkAccess": "Enabled", "environmentVariables": {}, "properties": {},
}
# Endpoint and deployment names: 3-32 characters, a letter first, letters/digits/hyphens, no hyphen last.
ENDPOINT_NAME = DEPLOYMENT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
ASSET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$")
# The SKUs managed online deployments accept (learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list).
# The emulator keeps its own copy of the service's list, apart from the provider's offline check,
# so a wrong entry on the client side is refused here instead of mirrored.
MANAGED_ONLINE_SKUS = frozenset({
    "Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2",
    "Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2", "Standard_F48s_v2",
    "Standard_F64s_v2", "Standard_F72s_v2", "Standard_E2s_v3", "Standard_E4s_v3", "Standard_E8s_v3", "Standard_E16s_v3",
    "Standard_E32s_v3", "Standard_E48s_v3", "Standard_E64s_v3", "Standard_NC4as_T4_v3", "Standard_NC6s_v3",
    "Standard_NC8as_T4_v3", "Standard_NC12s_v3", "Standard_NC16as_T4_v3", "Standard_NC24s_v3", "Standard_NC64as_T4_v3",
    "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4", "Standard_ND40rs_v2",
})


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(kind: str, name: str) -> ArmError:
    return ArmError(404, "ResourceNotFound",
                    f"The Resource '{PROVIDER}/workspaces/{WORKSPACE}/{kind}/{name}' under resource group '{RESOURCE_GROUP}' was not found.")


@dataclass
class Operation:
    id: str
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    error: dict | None = None
    started: str = field(default_factory=now)
    ended: str | None = None

    def finish(self, error: dict | None = None) -> None:
        self.status, self.error, self.ended = ("Failed", error, now()) if error else ("Succeeded", None, now())


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


Handler = Callable[..., Response]


class AzureState:
    """The workspace's resources, keyed the way ARM addresses them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.models: dict[str, dict] = {}  # container name -> container resource
        self.model_versions: dict[tuple[str, str], dict] = {}
        self.environments: dict[str, dict] = {}
        self.environment_versions: dict[tuple[str, str], dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.keys: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, str] = {}  # aml token -> endpoint
        self.deployments: dict[tuple[str, str], dict] = {}
        self.containers: dict[tuple[str, str], Container] = {}
        self.operations: dict[str, Operation] = {}


class ServerParts:
    """What the operation mixins (assets.py, endpoints.py) use of AzureEmulatorServer, declared for
    the type checker only: the server defines each of them."""

    if TYPE_CHECKING:
        state: AzureState
        workdir: Path
        acr: Any
        containers: Any
        container_name: str
        provisioning_delay: float
        health_timeout: float

        @property
        def url(self) -> str: ...

        def _blob_service(self) -> Any: ...

        def _id(self, *parts: str) -> str: ...

        def _system_data(self, previous: dict | None = None) -> dict: ...

        def _start_operation(self) -> Operation: ...

        def _async_headers(self, operation: Operation) -> dict[str, str]: ...

        def _run_later(self, target: Callable[[], None]) -> None: ...

        @staticmethod
        def _validate(model: str, body: Any) -> None: ...


def _copy(resource: dict) -> dict:
    """A snapshot for a response, so later state changes do not race the serialisation."""
    return json.loads(json.dumps(resource))
