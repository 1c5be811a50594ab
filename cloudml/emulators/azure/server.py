"""The offline Azure: the Azure Resource Manager and Azure ML REST operations azure-ai-ml's
`MLClient` calls for model registration and managed online endpoints, a managed-identity token
endpoint (so the unmodified DefaultAzureCredential works), scoring URIs that serve real
predictions, and Azurite for the workspace's blob datastore.

Resources live in memory. Long-running operations answer 201/202 with an `Azure-AsyncOperation`
header that the SDK's poller follows until Succeeded/Failed, as Azure ML's do. Deployments run a
real cloudml serving process each (hosting.py).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudml.emulators.azure import certs
from cloudml.emulators.azure.acr import AcrRegistry
from cloudml.emulators.azure.arm import (
    CLOUD_NAME,
    LOCATION,
    PROVIDER,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    ArmError,
    AzureState,
    Handler,
    Operation,
    Response,
    now,
)
from cloudml.emulators.azure.assets import WorkspaceAssets
from cloudml.emulators.azure.azurite import Azurite
from cloudml.emulators.azure.endpoints import OnlineEndpoints
from cloudml.emulators.azure.validation import InvalidBody, check
from cloudml.emulators.container import ContainerHost
from cloudml.emulators.faults import Fault, Faults

__all__ = ["AzureEmulatorServer", "CLOUD_NAME"]


class AzureEmulatorServer(WorkspaceAssets, OnlineEndpoints):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, provisioning_delay: float = 1.0, health_timeout: float = 180.0,
                 workdir: Path | None = None):
        self.host = host
        self.requested_port = port
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cloudml-azure-emu-"))
        self.state = AzureState()
        self.faults = Faults()
        self.calls: list[dict[str, str]] = []
        self.identity_header = secrets.token_hex(16)
        self.issued_tokens: dict[str, float] = {}  # Azure AD access token -> expiry (ACR's exchange checks them)
        self.acr = AcrRegistry(self.workdir / "registry", aad_token_valid=self._token_valid,
                               record=lambda action, agent: self.calls.append({"action": action, "user_agent": agent}))
        self.containers = ContainerHost(self.acr.registry, credentials=self.acr.pull_credentials)
        self.azurite = Azurite(self.workdir / "azurite", log_path=self.workdir / "azurite.log")
        self.container_name = f"azureml-blobstore-{uuid.uuid4()}"
        self._httpd: ThreadingHTTPServer | None = None
        self._routes = self._route_table()

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> AzureEmulatorServer:
        cert, key, self.ca_bundle = certs.make_certificate(self.workdir / "tls")
        self.azurite.start()
        self.acr.start()
        self._blob_service().create_container(self.container_name)
        server = self

        class RequestHandler(_Handler):
            emulator = server

        self._httpd = ThreadingHTTPServer((self.host, self.requested_port), RequestHandler)
        self._httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="azure-emulator").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self.state.lock:
            containers = list(self.state.containers.values())
            self.state.containers.clear()
        for container in containers:
            container.stop()
        self.containers.close()
        self.azurite.stop()
        self.acr.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def client_env(self) -> dict[str, str]:
        """What points azure-identity, azure-ai-ml (via the provider) and requests at this emulator."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "CLOUDML_AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "CLOUDML_AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
            "CLOUDML_AZURE_WORKSPACE": WORKSPACE,
            "CLOUDML_AZURE_RESOURCE_MANAGER_URL": self.url,
            "CLOUDML_AZURE_STORAGE_URL": self.azurite.account_url,
        }

    def cloud_metadata(self) -> dict[str, str]:
        """The endpoints this emulated cloud publishes, in the form azure-ai-ml's `MLClient(cloud=...,
        cloud_metadata=...)` takes for a custom cloud: everything (ARM, the token authority, the
        portal) is this server; blob storage keeps the public suffix (Azurite is reached by URL)."""
        base = self.url.rstrip("/") + "/"
        return {"azure_portal": base, "resource_manager": base, "active_directory": base, "aml_resource_id": base,
                "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": base}

    def _blob_service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.azurite.connection_string)

    # --- plumbing -------------------------------------------------------------------------
    def _route_table(self) -> list[tuple[str, re.Pattern, Handler, str]]:
        ws = rf"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/{PROVIDER}/workspaces/(?P<ws>[^/]+)"
        ep = ws + r"/onlineEndpoints/(?P<endpoint>[^/]+)"
        dep = ep + r"/deployments/(?P<deployment>[^/]+)"
        rbac = f"{PROVIDER}/workspaces"
        acr = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft.ContainerRegistry/registries/(?P<registry>[^/]+)"
        table: list[tuple[str, str, Handler, str]] = [
            ("GET", acr, self.get_registry, "Microsoft.ContainerRegistry/registries/read"),
            ("GET", ws, self.get_workspace, f"{rbac}/read"),
            ("GET", ws + "/datastores", self.list_datastores, f"{rbac}/datastores/read"),
            ("GET", ws + "/datastores/(?P<datastore>[^/]+)", self.get_datastore, f"{rbac}/datastores/read"),
            ("POST", ws + "/datastores/(?P<datastore>[^/]+)/listSecrets", self.list_secrets, f"{rbac}/datastores/listsecrets/action"),
            ("GET", ws + "/models", self.list_model_containers, f"{rbac}/models/read"),
            ("GET", ws + "/models/(?P<model>[^/]+)", self.get_model_container, f"{rbac}/models/read"),
            ("PUT", ws + "/models/(?P<model>[^/]+)", self.put_model_container, f"{rbac}/models/write"),
            ("DELETE", ws + "/models/(?P<model>[^/]+)", self.delete_model_container, f"{rbac}/models/delete"),
            ("GET", ws + "/models/(?P<model>[^/]+)/versions", self.list_model_versions, f"{rbac}/models/versions/read"),
            ("GET", ws + "/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)", self.get_model_version, f"{rbac}/models/versions/read"),
            ("PUT", ws + "/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)", self.put_model_version, f"{rbac}/models/versions/write"),
            ("DELETE", ws + "/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)", self.delete_model_version, f"{rbac}/models/versions/delete"),
            ("GET", ws + "/environments/(?P<env>[^/]+)", self.get_environment, f"{rbac}/environments/read"),
            ("GET", ws + "/environments/(?P<env>[^/]+)/versions/(?P<version>[^/]+)", self.get_environment_version, f"{rbac}/environments/versions/read"),
            ("PUT", ws + "/environments/(?P<env>[^/]+)/versions/(?P<version>[^/]+)", self.put_environment_version, f"{rbac}/environments/versions/write"),
            ("GET", ws + "/onlineEndpoints", self.list_endpoints, f"{rbac}/onlineEndpoints/read"),
            ("GET", ep, self.get_endpoint, f"{rbac}/onlineEndpoints/read"),
            ("PUT", ep, self.put_endpoint, f"{rbac}/onlineEndpoints/write"),
            ("PATCH", ep, self.patch_endpoint, f"{rbac}/onlineEndpoints/write"),
            ("DELETE", ep, self.delete_endpoint, f"{rbac}/onlineEndpoints/delete"),
            ("POST", ep + "/listKeys", self.list_keys, f"{rbac}/onlineEndpoints/listKeys/action"),
            ("POST", ep + "/regenerateKeys", self.regenerate_keys, f"{rbac}/onlineEndpoints/regenerateKeys/action"),
            ("POST", ep + "/token", self.get_token, f"{rbac}/onlineEndpoints/token/action"),
            ("GET", ep + "/deployments", self.list_deployments, f"{rbac}/onlineEndpoints/deployments/read"),
            ("GET", dep, self.get_deployment, f"{rbac}/onlineEndpoints/deployments/read"),
            ("PUT", dep, self.put_deployment, f"{rbac}/onlineEndpoints/deployments/write"),
            ("DELETE", dep, self.delete_deployment, f"{rbac}/onlineEndpoints/deployments/delete"),
            ("POST", dep + "/getLogs", self.get_logs, f"{rbac}/onlineEndpoints/deployments/getLogs/action"),
            ("GET", rf"/subscriptions/(?P<sub>[^/]+)/providers/{PROVIDER}/locations/(?P<loc>[^/]+)/mfeOperationsStatus/(?P<op>[^/]+)",
             self.operation_status, ""),
            ("GET", rf"/subscriptions/(?P<sub>[^/]+)/providers/{PROVIDER}/locations/(?P<loc>[^/]+)/mfeOperationResults/(?P<op>[^/]+)",
             self.operation_result, ""),
        ]
        return [(method, re.compile(pattern + "$"), handler, action) for method, pattern, handler, action in table]

    def dispatch(self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]) -> Response:
        for route_method, pattern, handler, action in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                params = match.groupdict()
                if action:
                    self.calls.append({"action": f"{action}", "user_agent": headers.get("user-agent", "")})
                    self._check_scope(params)
                    fault = self.faults.take(action) or self.faults.take(handler.__name__)
                    if fault is not None:
                        raise ArmError(fault.status, fault.code, fault.message)
                return handler(body=body, query=query, **{k: v for k, v in params.items() if k not in ("sub", "rg", "ws", "loc")})
        if any(pattern.match(path) for _, pattern, _, _ in self._routes):
            raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")
        raise ArmError(404, "NoRegisteredProviderFound" if "/providers/" in path else "InvalidResourceType",
                       f"No route for {method} {path} in the cloudml Azure emulator.")

    def _check_scope(self, params: dict[str, str]) -> None:
        if params.get("sub") not in (None, SUBSCRIPTION):
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{params['sub']}' could not be found.")
        if params.get("rg") not in (None, RESOURCE_GROUP):
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{params['rg']}' could not be found.")
        if params.get("ws") not in (None, WORKSPACE):
            raise ArmError(404, "ResourceNotFound",
                           f"The Resource '{PROVIDER}/workspaces/{params['ws']}' under resource group '{RESOURCE_GROUP}' was not found.")

    def _id(self, *parts: str) -> str:
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{PROVIDER}/workspaces/{WORKSPACE}" + "".join(f"/{p}" for p in parts)

    def _system_data(self, previous: dict | None = None) -> dict:
        created = (previous or {}).get("systemData", {}).get("createdAt") or now()
        return {"createdAt": created, "createdBy": "cloudml-emulator", "createdByType": "User", "lastModifiedAt": now(),
                "lastModifiedBy": "cloudml-emulator", "lastModifiedByType": "User"}

    def _start_operation(self) -> Operation:
        operation = Operation(id=str(uuid.uuid4()))
        with self.state.lock:
            self.state.operations[operation.id] = operation
        return operation

    def _async_headers(self, operation: Operation) -> dict[str, str]:
        base = f"{self.url}/subscriptions/{SUBSCRIPTION}/providers/{PROVIDER}/locations/{LOCATION}"
        return {"Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{operation.id}?api-version=2023-04-01",
                "Location": f"{base}/mfeOperationResults/{operation.id}?api-version=2023-04-01",
                "Retry-After": "1", "retry-after-ms": "250"}

    def _run_later(self, target: Callable[[], None]) -> None:
        threading.Thread(target=target, daemon=True).start()

    @staticmethod
    def _validate(model: str, body: Any) -> None:
        try:
            check(model, body)
        except InvalidBody as exc:
            raise ArmError(400, "UserError", f"Invalid request body: {exc}") from None

    # --- the workspace's container registry -----------------------------------------------
    def get_registry(self, registry: str, **_: Any) -> Response:
        from cloudml.emulators.azure.acr import REGISTRY_NAME

        if registry != REGISTRY_NAME:
            raise ArmError(404, "ResourceNotFound",
                           f"The Resource 'Microsoft.ContainerRegistry/registries/{registry}' under resource group '{RESOURCE_GROUP}' was not found.")
        return Response(200, self.acr.resource())

    # --- identity -------------------------------------------------------------------------
    def _token_valid(self, token: str) -> bool:
        with self.state.lock:
            return self.issued_tokens.get(token, 0) > time.time()

    def msi_token(self, query: dict[str, str], headers: dict[str, str]) -> Response:
        """The App Service managed-identity protocol (IDENTITY_ENDPOINT / IDENTITY_HEADER)."""
        if headers.get("x-identity-header") != self.identity_header:
            return Response(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER is missing or wrong"})
        token, expires = "emulator-" + secrets.token_hex(16), int(time.time()) + 3600
        with self.state.lock:
            self.issued_tokens = {t: e for t, e in self.issued_tokens.items() if e > time.time()}
            self.issued_tokens[token] = expires
        return Response(200, {"access_token": token, "expires_on": str(expires),
                              "resource": query.get("resource", ""), "token_type": "Bearer", "client_id": str(uuid.uuid4())})

    # --- long-running operations ----------------------------------------------------------
    def _operation(self, op: str) -> Operation:
        with self.state.lock:
            found = self.state.operations.get(op)
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"Operation {op} was not found.")
        return found

    def operation_status(self, op: str, **_: Any) -> Response:
        operation = self._operation(op)
        body: dict[str, Any] = {"id": op, "name": op, "status": operation.status, "startTime": operation.started}
        if operation.ended:
            body["endTime"] = operation.ended
        if operation.error:
            body["error"] = operation.error
        headers = {"Retry-After": "1", "retry-after-ms": "250"} if operation.status == "InProgress" else {}
        return Response(200, body, headers)

    def operation_result(self, op: str, **_: Any) -> Response:
        operation = self._operation(op)
        if operation.status == "InProgress":
            return Response(202, None, {"Retry-After": "1", "retry-after-ms": "250"})
        if operation.status == "Failed":
            error = operation.error or {}
            raise ArmError(400, error.get("code", "InternalServerError"), error.get("message", "The operation failed."))
        return Response(204)

class _Handler(BaseHTTPRequestHandler):
    emulator: AzureEmulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _send(self, response: Response) -> None:
        payload = response.raw if response.raw is not None else (b"" if response.body is None else json.dumps(response.body).encode())
        self.send_response(response.status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), **response.headers}
        if payload and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json; charset=utf-8"
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        emulator = self.emulator
        try:
            if parts.path == "/msi/token":
                self._send(emulator.msi_token(query, headers))
                return
            if parts.path.startswith("/_cloudml/"):
                self._send(self._control(parts.path[len("/_cloudml/"):], raw))
                return
            scoring = re.match(r"^/endpoints/([^/]+)/score$", parts.path)
            if scoring and self.command == "POST":
                self._send(emulator.score(scoring.group(1), raw, headers))
                return
            if not headers.get("authorization", "").startswith("Bearer "):
                raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.") from None
            self._send(emulator.dispatch(self.command, parts.path.rstrip("/"), query, body, headers))
        except ArmError as exc:
            self._send(Response(exc.status, {"error": {"code": exc.code, "message": exc.message}}))
        except Exception as exc:  # noqa: BLE001 - a 500 the way ARM reports one
            self._send(Response(500, {"error": {"code": "InternalServerError", "message": f"{type(exc).__name__}: {exc}"}}))

    def _control(self, route: str, raw: bytes) -> Response:
        emulator = self.emulator
        if route == "faults" and self.command == "POST":
            emulator.faults.add(Fault(**json.loads(raw)))
            return Response(200, emulator.faults.pending())
        if route == "faults" and self.command == "DELETE":
            emulator.faults.clear()
            return Response(200, [])
        if route == "calls":
            calls = list(emulator.calls)
            if self.command == "DELETE":
                emulator.calls.clear()
            return Response(200, calls)
        if route == "fleet":
            with emulator.state.lock:
                return Response(200, [{"endpoint": e, "deployment": d, "state": r["properties"]["provisioningState"],
                                       "pid": _pid(emulator.state.containers.get((e, d))),
                                       "port": getattr(emulator.state.containers.get((e, d)), "port", None)}
                                      for (e, d), r in emulator.state.deployments.items()])
        return Response(404, {"error": {"code": "NotFound", "message": f"no control route {route}"}})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle


def _pid(container: Any) -> int | None:
    proc = getattr(container, "proc", None)
    return proc.pid if proc is not None else None
