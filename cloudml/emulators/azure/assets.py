"""Workspace, datastore, model and environment operations of the Azure emulator (a mixin of
AzureEmulatorServer: `self` has the state, the id helpers and the request validation)."""

from __future__ import annotations

import uuid
from typing import Any

from cloudml.emulators.azure.acr import REGISTRY_ID
from cloudml.emulators.azure.arm import (
    ASSET_NAME,
    DATASTORE,
    LOCATION,
    PROVIDER,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    ArmError,
    Response,
    ServerParts,
    not_found,
)
from cloudml.emulators.azure.azurite import ACCOUNT, ACCOUNT_KEY


class WorkspaceAssets(ServerParts):
    # --- workspace and datastores -----------------------------------------------------------
    def get_workspace(self, **_: Any) -> Response:
        return Response(200, {
            "id": self._id(), "name": WORKSPACE, "type": f"{PROVIDER}/workspaces", "location": LOCATION, "kind": "Default",
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
            "sku": {"name": "Basic", "tier": "Basic"}, "tags": {},
            "properties": {
                "friendlyName": WORKSPACE, "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, WORKSPACE)), "provisioningState": "Succeeded",
                "storageAccount": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
                "discoveryUrl": f"{self.url}/discovery", "mlFlowTrackingUri": f"azureml://{LOCATION}.api.azureml.ms/mlflow/v1.0{self._id()}",
                "publicNetworkAccess": "Enabled", "v1LegacyMode": False,
                # Azure ML attaches a registry at the first image build; without docker-registry the emulator has none.
                **({"containerRegistry": REGISTRY_ID} if self.acr.registry.running else {}),
            },
            "systemData": self._system_data(),
        })

    def _datastore(self) -> dict:
        return {
            "id": self._id("datastores", DATASTORE), "name": DATASTORE, "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob", "accountName": ACCOUNT, "containerName": self.container_name,
                "endpoint": "core.windows.net", "protocol": "https", "credentials": {"credentialsType": "AccountKey"},
                "isDefault": True, "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "description": "The workspace's default blob store (Azurite in the cloudml emulator).", "tags": {}, "properties": {},
            },
            "systemData": self._system_data(),
        }

    def list_datastores(self, query: dict[str, str], **_: Any) -> Response:
        return Response(200, {"value": [self._datastore()]})

    def get_datastore(self, datastore: str, **_: Any) -> Response:
        if datastore != DATASTORE:
            raise not_found("datastores", datastore)
        return Response(200, self._datastore())

    def list_secrets(self, datastore: str, **_: Any) -> Response:
        if datastore != DATASTORE:
            raise not_found("datastores", datastore)
        return Response(200, {"secretsType": "AccountKey", "key": ACCOUNT_KEY})

    # --- models ---------------------------------------------------------------------------
    def list_model_containers(self, **_: Any) -> Response:
        with self.state.lock:
            return Response(200, {"value": list(self.state.models.values())})

    def get_model_container(self, model: str, **_: Any) -> Response:
        with self.state.lock:
            if model not in self.state.models:
                raise not_found("models", model)
            return Response(200, self.state.models[model])

    def put_model_container(self, model: str, body: Any, **_: Any) -> Response:
        self._validate("ModelContainer", body)
        with self.state.lock:
            previous = self.state.models.get(model)
            self.state.models[model] = self._model_container(model, body.get("properties") or {}, previous)
            return Response(200 if previous else 201, self.state.models[model])

    def _model_container(self, model: str, properties: dict, previous: dict | None) -> dict:
        props = {"description": None, "tags": {}, "properties": {}, "isArchived": False, "provisioningState": "Succeeded",
                 **((previous or {}).get("properties") or {}), **properties}
        return {"id": self._id("models", model), "name": model, "type": f"{PROVIDER}/workspaces/models",
                "properties": props, "systemData": self._system_data(previous)}

    def delete_model_container(self, model: str, **_: Any) -> Response:
        with self.state.lock:
            if self.state.models.pop(model, None) is None:
                return Response(204)
            for key in [k for k in self.state.model_versions if k[0] == model]:
                del self.state.model_versions[key]
        return Response(200)

    def list_model_versions(self, model: str, query: dict[str, str], **_: Any) -> Response:
        view = query.get("listViewType", "ActiveOnly")
        with self.state.lock:
            versions = [v for (m, _), v in self.state.model_versions.items() if m == model]
        if view == "ActiveOnly":
            versions = [v for v in versions if not v["properties"].get("isArchived")]
        elif view == "ArchivedOnly":
            versions = [v for v in versions if v["properties"].get("isArchived")]
        if query.get("tags"):
            wanted: dict[str, str | None] = {}
            for pair in query["tags"].split(","):
                key, has_value, value = pair.partition("=")
                wanted[key] = value if has_value else None
            versions = [v for v in versions if all(k in v["properties"]["tags"] and (w is None or v["properties"]["tags"][k] == w) for k, w in wanted.items())]
        versions.sort(key=lambda v: v["systemData"]["createdAt"], reverse=True)
        return Response(200, {"value": versions})

    def get_model_version(self, model: str, version: str, **_: Any) -> Response:
        with self.state.lock:
            found = self.state.model_versions.get((model, version))
        if found is None:
            raise not_found(f"models/{model}/versions", version)
        return Response(200, found)

    def put_model_version(self, model: str, version: str, body: Any, **_: Any) -> Response:
        if not ASSET_NAME.match(model):
            raise ArmError(400, "UserError", f"Model name '{model}' is invalid: use letters, digits, '-', '_' and '.', "
                                             "starting with a letter or digit, up to 255 characters.")
        self._validate("ModelVersion", body)
        properties = body.get("properties") or {}
        uri = properties.get("modelUri")
        if not uri:
            raise ArmError(400, "UserError", "Invalid request body: $.properties.modelUri is required for a model version.")
        with self.state.lock:
            previous = self.state.model_versions.get((model, version))
            if previous is not None and previous["properties"].get("modelUri") != uri:
                raise ArmError(409, "UserError", "Could not update asset: the path of an existing model version cannot change. Register a new version instead.")
            props = {"modelType": "custom_model", "tags": {}, "properties": {}, "isArchived": False, "isAnonymous": False, "flavors": {},
                     "provisioningState": "Succeeded", **((previous or {}).get("properties") or {}), **properties}
            resource = {"id": self._id("models", model, "versions", version), "name": version, "type": f"{PROVIDER}/workspaces/models/versions",
                        "properties": props, "systemData": self._system_data(previous)}
            self.state.model_versions[(model, version)] = resource
            container = self.state.models.get(model) or self._model_container(model, {}, None)
            container["properties"]["latestVersion"] = version
            self.state.models[model] = container
        return Response(200 if previous else 201, resource)

    def delete_model_version(self, model: str, version: str, **_: Any) -> Response:
        with self.state.lock:
            # Azure lets a version go while a deployment uses it: the deployment has its own copy.
            if self.state.model_versions.pop((model, version), None) is None:
                return Response(204)
            if not any(m == model for m, _ in self.state.model_versions):
                self.state.models.pop(model, None)
        return Response(200)

    # --- environments ---------------------------------------------------------------------
    def get_environment(self, env: str, **_: Any) -> Response:
        with self.state.lock:
            if env not in self.state.environments:
                raise not_found("environments", env)
            return Response(200, self.state.environments[env])

    def get_environment_version(self, env: str, version: str, **_: Any) -> Response:
        with self.state.lock:
            found = self.state.environment_versions.get((env, version))
        if found is None:
            raise not_found(f"environments/{env}/versions", version)
        return Response(200, found)

    def put_environment_version(self, env: str, version: str, body: Any, **_: Any) -> Response:
        self._validate("EnvironmentVersion", body)
        properties = body.get("properties") or {}
        if not properties.get("image") and not properties.get("build"):
            raise ArmError(400, "UserError", "An environment needs a docker image or a build context.")
        with self.state.lock:
            previous = self.state.environment_versions.get((env, version))
            resource = {"id": self._id("environments", env, "versions", version), "name": version,
                        "type": f"{PROVIDER}/workspaces/environments/versions",
                        "properties": {"osType": "Linux", "tags": {}, "properties": {}, "isArchived": False, "isAnonymous": False,
                                       **properties, "provisioningState": "Succeeded", "environmentType": "UserCreated"},
                        "systemData": self._system_data(previous)}
            self.state.environment_versions[(env, version)] = resource
            self.state.environments[env] = {"id": self._id("environments", env), "name": env, "type": f"{PROVIDER}/workspaces/environments",
                                            "properties": {"latestVersion": version, "isArchived": False, "tags": {}, "properties": {}},
                                            "systemData": self._system_data(self.state.environments.get(env))}
        return Response(200 if previous else 201, resource)
