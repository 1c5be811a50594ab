"""Online endpoint and deployment operations of the Azure emulator, and the scoring URI (a mixin
of AzureEmulatorServer: `self` has the state, the id helpers, the request validation and the
long-running operation helpers)."""

from __future__ import annotations

import random
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cloudml.emulators.azure.arm import (
    DATASTORE,
    DEPLOYMENT_DEFAULTS,
    DEPLOYMENT_NAME,
    ENDPOINT_NAME,
    LOCATION,
    MANAGED_ONLINE_SKUS,
    PROVIDER,
    WORKSPACE,
    ArmError,
    Operation,
    Response,
    ServerParts,
    _copy,
    not_found,
)
from cloudml.emulators.azure.hosting import Container


class OnlineEndpoints(ServerParts):
    # --- online endpoints -----------------------------------------------------------------
    def _endpoint(self, name: str) -> dict:
        found = self.state.endpoints.get(name)
        if found is None:
            raise not_found("onlineEndpoints", name)
        return found

    def list_endpoints(self, **_: Any) -> Response:
        with self.state.lock:
            return Response(200, {"value": [_copy(e) for e in self.state.endpoints.values()]})

    def get_endpoint(self, endpoint: str, **_: Any) -> Response:
        with self.state.lock:
            return Response(200, _copy(self._endpoint(endpoint)))

    def put_endpoint(self, endpoint: str, body: Any, **_: Any) -> Response:
        if not ENDPOINT_NAME.match(endpoint) or "--" in endpoint:
            raise ArmError(400, "BadArgument", f"Endpoint name '{endpoint}' is invalid: it must be 3-32 characters, start with a letter, "
                                               "contain only letters, digits and '-', and not end with '-'.")
        self._validate("OnlineEndpoint", body)
        properties = dict(body.get("properties") or {})
        auth_mode = properties.get("authMode")
        if auth_mode not in ("Key", "AMLToken", "AADToken"):
            raise ArmError(400, "BadArgument", f"authMode '{auth_mode}' is invalid; use Key, AMLToken or AADToken.")
        with self.state.lock:
            previous = self.state.endpoints.get(endpoint)
            if previous is not None and previous["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
                raise ArmError(409, "Conflict",
                               f"Endpoint {endpoint} is {previous['properties']['provisioningState']}; wait for the operation in progress to finish.")
            if previous is not None and previous["properties"]["authMode"] != auth_mode:
                raise ArmError(400, "BadArgument", "The authMode of an existing endpoint cannot change.")
            traffic = self._check_traffic(endpoint, properties.get("traffic"), "traffic")
            mirror = self._check_traffic(endpoint, properties.get("mirrorTraffic"), "mirrorTraffic")
            operation = self._start_operation()
            state = "Updating" if previous else "Creating"
            resource = {
                "id": self._id("onlineEndpoints", endpoint), "name": endpoint, "type": f"{PROVIDER}/workspaces/onlineEndpoints",
                "location": body.get("location", LOCATION), "kind": body.get("kind") or "Managed", "tags": body.get("tags") or {},
                "identity": body.get("identity") or {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
                "properties": {
                    "authMode": auth_mode, "description": properties.get("description"), "properties": properties.get("properties") or {},
                    "publicNetworkAccess": properties.get("publicNetworkAccess") or "Enabled",
                    "traffic": traffic if (previous is None or "traffic" in properties) else previous["properties"]["traffic"],
                    "mirrorTraffic": mirror if (previous is None or "mirrorTraffic" in properties) else previous["properties"]["mirrorTraffic"],
                    "scoringUri": f"{self.url}/endpoints/{endpoint}/score", "swaggerUri": f"{self.url}/endpoints/{endpoint}/swagger.json",
                    "provisioningState": state,
                },
                "systemData": self._system_data(previous),
            }
            self.state.endpoints[endpoint] = resource
            if previous is None:
                self.state.keys[endpoint] = {"primaryKey": secrets.token_urlsafe(24), "secondaryKey": secrets.token_urlsafe(24)}
        delay = self.provisioning_delay if previous is None else min(self.provisioning_delay, 0.3)

        def provision() -> None:
            time.sleep(delay)
            with self.state.lock:
                current = self.state.endpoints.get(endpoint)
                if current is not None and current["properties"]["provisioningState"] == state:
                    current["properties"]["provisioningState"] = "Succeeded"
            operation.finish()

        self._run_later(provision)
        return Response(200 if previous else 201, _copy(resource), self._async_headers(operation))

    def patch_endpoint(self, endpoint: str, body: Any, **_: Any) -> Response:
        self._validate("PartialMinimalTrackedResourceWithIdentity", body)
        with self.state.lock:
            resource = self._endpoint(endpoint)
            if "tags" in (body or {}):
                resource["tags"] = body["tags"] or {}
            resource["systemData"] = self._system_data(resource)
            return Response(200, _copy(resource))

    def _check_traffic(self, endpoint: str, traffic: Any, what: str) -> dict[str, int]:
        traffic = dict(traffic or {})
        for deployment, percent in traffic.items():
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                raise ArmError(400, "BadArgument", f"{what} for deployment '{deployment}' must be an integer between 0 and 100.")
            found = self.state.deployments.get((endpoint, deployment))
            if found is None:
                raise ArmError(400, "BadArgument", f"{what} is set for deployment '{deployment}', which does not exist on endpoint '{endpoint}'.")
            if percent and found["properties"]["provisioningState"] != "Succeeded":
                raise ArmError(400, "BadArgument", f"Traffic cannot be routed to deployment '{deployment}': its provisioning state is "
                                                   f"{found['properties']['provisioningState']}, not Succeeded.")
        total = sum(traffic.values())
        if what == "traffic" and total not in (0, 100):
            raise ArmError(400, "BadArgument", f"The traffic of endpoint '{endpoint}' must add up to 100 (or 0); it adds up to {total}.")
        return traffic

    def delete_endpoint(self, endpoint: str, **_: Any) -> Response:
        with self.state.lock:
            resource = self.state.endpoints.get(endpoint)
            if resource is None:
                return Response(204)
            resource["properties"]["provisioningState"] = "Deleting"
            operation = self._start_operation()

        def remove() -> None:
            time.sleep(min(self.provisioning_delay, 0.3))
            with self.state.lock:
                keys = [k for k in self.state.deployments if k[0] == endpoint]
                containers = [self.state.containers.pop(k) for k in keys if k in self.state.containers]
                for key in keys:
                    del self.state.deployments[key]
                self.state.endpoints.pop(endpoint, None)
                self.state.keys.pop(endpoint, None)
            for container in containers:
                container.stop()
            operation.finish()

        self._run_later(remove)
        return Response(202, None, self._async_headers(operation))

    def list_keys(self, endpoint: str, **_: Any) -> Response:
        with self.state.lock:
            resource = self._endpoint(endpoint)
            if resource["properties"]["authMode"] != "Key":
                raise ArmError(400, "BadArgument", f"Endpoint '{endpoint}' uses {resource['properties']['authMode']} authentication; it has no keys.")
            return Response(200, dict(self.state.keys[endpoint]))

    def regenerate_keys(self, endpoint: str, body: Any, **_: Any) -> Response:
        self._validate("RegenerateEndpointKeysRequest", body)
        with self.state.lock:
            self._endpoint(endpoint)
            which = {"Primary": "primaryKey", "Secondary": "secondaryKey"}.get(body.get("keyType"))
            if which is None:
                raise ArmError(400, "BadArgument", "keyType must be Primary or Secondary.")
            # azure-ai-ml sends the current key as keyValue; Azure ML still issues a new one then.
            wanted = body.get("keyValue")
            self.state.keys[endpoint][which] = wanted if wanted and wanted != self.state.keys[endpoint][which] else secrets.token_urlsafe(24)
            operation = self._start_operation()
        operation.finish()
        return Response(202, None, self._async_headers(operation))

    def get_token(self, endpoint: str, **_: Any) -> Response:
        with self.state.lock:
            resource = self._endpoint(endpoint)
            if resource["properties"]["authMode"] != "AMLToken":
                raise ArmError(400, "BadArgument", f"Endpoint '{endpoint}' uses {resource['properties']['authMode']} authentication, not AMLToken.")
            token = secrets.token_urlsafe(32)
            self.state.tokens[token] = endpoint
        expiry = datetime.now(timezone.utc) + timedelta(hours=1)
        return Response(200, {"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": int(expiry.timestamp()),
                              "refreshAfterTimeUtc": int((expiry - timedelta(minutes=30)).timestamp())})

    # --- deployments ----------------------------------------------------------------------
    def list_deployments(self, endpoint: str, **_: Any) -> Response:
        with self.state.lock:
            self._endpoint(endpoint)
            return Response(200, {"value": [_copy(d) for (e, _), d in self.state.deployments.items() if e == endpoint]})

    def get_deployment(self, endpoint: str, deployment: str, **_: Any) -> Response:
        with self.state.lock:
            self._endpoint(endpoint)
            found = self.state.deployments.get((endpoint, deployment))
            if found is None:
                raise not_found(f"onlineEndpoints/{endpoint}/deployments", deployment)
            return Response(200, _copy(found))

    def put_deployment(self, endpoint: str, deployment: str, body: Any, **_: Any) -> Response:
        if not DEPLOYMENT_NAME.match(deployment):
            raise ArmError(400, "BadArgument", f"Deployment name '{deployment}' is invalid: it must be 3-32 characters, start with a letter, "
                                               "contain only letters, digits and '-', and not end with '-'.")
        self._validate("OnlineDeployment", body)
        properties = dict(body.get("properties") or {})
        if properties.get("endpointComputeType") != "Managed":
            raise ArmError(400, "BadArgument", "The cloudml emulator implements managed online deployments only (endpointComputeType Managed).")
        instance_type = properties.get("instanceType")
        if instance_type not in MANAGED_ONLINE_SKUS:
            raise ArmError(400, "BadArgument", f"The instance type '{instance_type}' is not supported for managed online deployments. "
                                               f"Supported: {', '.join(sorted(MANAGED_ONLINE_SKUS))}.")
        capacity = (body.get("sku") or {}).get("capacity", 1)
        model = self._resolve_model(properties.get("model"))
        environment = self._resolve_environment(properties.get("environmentId"))
        with self.state.lock:
            parent = self._endpoint(endpoint)
            if parent["properties"]["provisioningState"] not in ("Succeeded", "Updating"):
                raise ArmError(409, "Conflict",
                               f"Endpoint {endpoint} is {parent['properties']['provisioningState']}; deployments can be added once it has Succeeded.")
            previous = self.state.deployments.get((endpoint, deployment))
            if previous is not None and previous["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
                raise ArmError(409, "Conflict",
                               f"Deployment {deployment} is {previous['properties']['provisioningState']}; wait for the operation in progress to finish.")
            state = "Updating" if previous else "Creating"
            operation = self._start_operation()
            resource = {
                "id": self._id("onlineEndpoints", endpoint, "deployments", deployment), "name": deployment,
                "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments", "location": body.get("location", LOCATION),
                "kind": body.get("kind") or "Managed", "tags": body.get("tags") or {},
                "sku": {"name": "Default", "capacity": capacity, **(body.get("sku") or {})},
                "properties": {**DEPLOYMENT_DEFAULTS, **{k: v for k, v in properties.items() if v is not None}, "provisioningState": state},
                "systemData": self._system_data(previous),
            }
            self.state.deployments[(endpoint, deployment)] = resource
        self._run_later(lambda: self._provision(endpoint, deployment, model, environment, properties, state, operation))
        return Response(200 if previous else 201, _copy(resource), self._async_headers(operation))

    def _resolve_model(self, reference: str | None) -> dict:
        match = re.search(r"/models/([^/]+)/versions/([^/]+)$", reference or "")
        if match is None:
            raise ArmError(400, "BadArgument", f"The deployment's model '{reference}' is not a model version ARM id.")
        with self.state.lock:
            found = self.state.model_versions.get((match.group(1), match.group(2)))
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"Model {match.group(1)}:{match.group(2)} was not found in workspace {WORKSPACE}.")
        return found

    def _resolve_environment(self, reference: str | None) -> dict:
        match = re.search(r"/environments/([^/]+)/versions/([^/]+)$", reference or "")
        if match is None:
            raise ArmError(400, "BadArgument", f"The deployment's environment '{reference}' is not an environment version ARM id.")
        with self.state.lock:
            found = self.state.environment_versions.get((match.group(1), match.group(2)))
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"Environment {match.group(1)}:{match.group(2)} was not found in workspace {WORKSPACE}.")
        return found

    def _provision(self, endpoint: str, deployment: str, model: dict, environment: dict, properties: dict, state: str, operation: Operation) -> None:
        """What Azure does for a deployment: pull the model, start the container, probe it."""
        time.sleep(self.provisioning_delay)
        inference = environment["properties"].get("inferenceConfig") or {}
        model_name, model_version = model["id"].split("/models/")[1].split("/versions/")
        container = Container(
            self.workdir / "deployments", name=f"{endpoint}-{deployment}", model=model_name, version=model_version,
            env=dict(properties.get("environmentVariables") or {}),
            readiness_path=(inference.get("readinessRoute") or {}).get("path") or "/",
            scoring_path=(inference.get("scoringRoute") or {}).get("path") or "/score",
            image=environment["properties"].get("image") or "", containers=self.containers,
        )
        error = None
        try:
            self._download_model(model, container.model_dir)
        except Exception as exc:  # noqa: BLE001 - reported the way Azure reports it
            error = f"ModelDownloadFailed: could not download the model files of {model['id']}: {exc}"
            container.log_path.write_text(error + "\n")
        if error is None:
            container.start()
            error = container.wait_ready(self.health_timeout)
            if error is not None:
                container.stop(keep_files=True)
        with self.state.lock:
            resource = self.state.deployments.get((endpoint, deployment))
            if resource is None or resource["properties"]["provisioningState"] != state:
                container.stop()  # deleted (or replaced) while it started
                operation.finish({"code": "Canceled", "message": "The deployment was deleted while it was provisioned."})
                return
            previous = self.state.containers.get((endpoint, deployment))
            if error is None:
                self.state.containers[(endpoint, deployment)] = container
                resource["properties"]["provisioningState"] = "Succeeded"
            else:
                if previous is None:
                    self.state.containers[(endpoint, deployment)] = container  # kept for getLogs
                resource["properties"]["provisioningState"] = "Failed"
        if error is None and previous is not None:
            previous.stop()
        if error is not None and previous is not None:
            container.stop()
        operation.finish(None if error is None else {"code": "DeploymentFailed", "message": error})

    def _download_model(self, model: dict, target: Path) -> None:
        uri = model["properties"]["modelUri"]
        match = re.match(r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?datastores/([^/]+)/paths/(.+)$", uri, re.I)
        if match is None:
            raise ValueError(f"the emulator serves models stored in the workspace datastore only, not {uri}")
        if match.group(1) != DATASTORE:
            raise ValueError(f"datastore {match.group(1)} does not exist")
        prefix = match.group(2).rstrip("/")
        container = self._blob_service().get_container_client(self.container_name)
        blobs = [b.name for b in container.list_blobs(name_starts_with=prefix)]
        if not blobs:
            raise FileNotFoundError(f"no blobs under {prefix} in {self.container_name}")
        # Azure mounts a folder model as AZUREML_MODEL_DIR/<folder name>/...
        base = prefix.rsplit("/", 1)[0] if prefix.rsplit("/", 1)[-1] else prefix
        for name in blobs:
            relative = name[len(base):].lstrip("/")
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(container.download_blob(name).readall())

    def delete_deployment(self, endpoint: str, deployment: str, **_: Any) -> Response:
        with self.state.lock:
            self._endpoint(endpoint)
            resource = self.state.deployments.get((endpoint, deployment))
            if resource is None:
                return Response(204)
            share = self.state.endpoints[endpoint]["properties"]["traffic"].get(deployment, 0)
            if share:
                raise ArmError(400, "BadArgument", f"Deployment '{deployment}' takes {share}% of the traffic of endpoint '{endpoint}'; "
                                                   "move its traffic to another deployment (or set it to 0) before deleting it.")
            resource["properties"]["provisioningState"] = "Deleting"
            self.state.endpoints[endpoint]["properties"]["mirrorTraffic"].pop(deployment, None)
            self.state.endpoints[endpoint]["properties"]["traffic"].pop(deployment, None)
            operation = self._start_operation()

        def remove() -> None:
            time.sleep(min(self.provisioning_delay, 0.3))
            with self.state.lock:
                self.state.deployments.pop((endpoint, deployment), None)
                container = self.state.containers.pop((endpoint, deployment), None)
            if container is not None:
                container.stop()
            operation.finish()

        self._run_later(remove)
        return Response(202, None, self._async_headers(operation))

    def get_logs(self, endpoint: str, deployment: str, body: Any, **_: Any) -> Response:
        self._validate("DeploymentLogsRequest", body or {})
        with self.state.lock:
            self._endpoint(endpoint)
            if (endpoint, deployment) not in self.state.deployments:
                raise not_found(f"onlineEndpoints/{endpoint}/deployments", deployment)
            container = self.state.containers.get((endpoint, deployment))
        tail = int((body or {}).get("tail") or 5000)
        if (body or {}).get("containerType") == "StorageInitializer":
            lines = [f"Downloading model files for {endpoint}/{deployment}", "Model files downloaded"]
        else:
            lines = container.log_lines() if container is not None else []
        return Response(200, {"content": "\n".join(lines[-tail:]) + ("\n" if lines else "")})

    # --- scoring --------------------------------------------------------------------------
    def score(self, endpoint: str, body: bytes, headers: dict[str, str]) -> Response:
        with self.state.lock:
            resource = self.state.endpoints.get(endpoint)
            if resource is None:
                return Response(404, {"message": f"Endpoint {endpoint} not found."})
            auth = headers.get("authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
            mode = resource["properties"]["authMode"]
            allowed = (token in self.state.keys.get(endpoint, {}).values()) if mode == "Key" else (self.state.tokens.get(token) == endpoint)
            if not token or not allowed:
                return Response(401, {"message": "Invalid authentication: the key or token is missing, wrong or expired."},
                                {"WWW-Authenticate": 'Bearer realm="endpoint"'})
            chosen = headers.get("azureml-model-deployment")
            traffic = {d: p for d, p in resource["properties"]["traffic"].items() if p > 0}
            if chosen:
                if (endpoint, chosen) not in self.state.deployments:
                    return Response(404, {"message": f"Deployment {chosen} not found on endpoint {endpoint}."})
            elif traffic:
                chosen = random.choices(list(traffic), weights=list(traffic.values()))[0]
            else:
                return Response(424, {"message": "No valid deployments to route to. Please check that the endpoint has at least one deployment "
                                                 "with positive weight values or use a deployment specific header to route."})
            container = self.state.containers.get((endpoint, chosen))
            ready = self.state.deployments[(endpoint, chosen)]["properties"]["provisioningState"] == "Succeeded"
        if container is None or not ready:
            return Response(503, {"message": f"Deployment {chosen} is not ready to serve."})
        try:
            result = container.request("POST", container.scoring_path, body=body,
                                       headers={"Content-Type": headers.get("content-type", "application/json")})
        except OSError as exc:
            return Response(502, {"message": f"Deployment {chosen} did not answer: {exc}"})
        return Response(result.status, raw=result.body, headers={"Content-Type": result.headers.get("content-type", "application/json"),
                                                                 "azureml-model-deployment": chosen})
