"""An offline Vertex AI + GCS for the `gcp` provider, on two local ports.

- Vertex AI v1 REST (the subset cloudml uses: models upload/get/list/delete, endpoints
  create/get/list/patch/delete/deployModel/undeployModel/predict/rawPredict, operations get),
  reached by the official client with `api_endpoint="http://127.0.0.1:PORT"`, `api_transport="rest"`
  and anonymous credentials (see vertex.py for how requests are validated).
- Cloud Logging's `POST /v2/entries:list` on the same port: the output of the serving processes
  as log entries of resource type `aiplatform.googleapis.com/Endpoint`, like Vertex AI writes them.
- Artifact Registry: repositories create/get on the same port, a real registry for
  `LOCATION-docker.pkg.dev` (CLOUDML_GCP_REGISTRY_HOST), and an OAuth token endpoint `POST /token`
  for the service-account key file the emulator writes (artifacts.py).
- GCS: `gcp-storage-emulator` (in memory) on its own port, reached through `STORAGE_EMULATOR_HOST`.

Control routes (JSON), for tests:
    GET    /_cloudml/health     ready check
    POST   /_cloudml/faults     {"action": "DeployModel", "status": "RESOURCE_EXHAUSTED", "message": ..., "times": 1}
    DELETE /_cloudml/faults     clear scheduled faults
    GET    /_cloudml/fleet      the serving processes behind the endpoints
    GET    /_cloudml/calls      every API call (action, user agent); DELETE: and clear
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cloudml.emulators.container import ContainerHost
from cloudml.emulators.faults import Fault, Faults
from cloudml.emulators.gcp.artifacts import ArtifactRegistry
from cloudml.emulators.gcp.vertex import ApiError, VertexService

PROJECT = "cloudml-emulator"
LOCATION = "us-central1"
_LOC = r"projects/[^/]+/locations/[^/]+"
ROUTES: list[tuple[str, re.Pattern, str]] = [
    ("POST", re.compile(rf"^/v1/({_LOC})/models:upload$"), "UploadModel"),
    ("GET", re.compile(rf"^/v1/({_LOC})/models$"), "ListModels"),
    ("GET", re.compile(rf"^/v1/({_LOC}/models/[^/:]+)$"), "GetModel"),
    ("DELETE", re.compile(rf"^/v1/({_LOC}/models/[^/:]+)$"), "DeleteModel"),
    ("POST", re.compile(rf"^/v1/({_LOC})/endpoints$"), "CreateEndpoint"),
    ("GET", re.compile(rf"^/v1/({_LOC})/endpoints$"), "ListEndpoints"),
    ("GET", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+)$"), "GetEndpoint"),
    ("PATCH", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+)$"), "UpdateEndpoint"),
    ("DELETE", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+)$"), "DeleteEndpoint"),
    ("POST", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+):deployModel$"), "DeployModel"),
    ("POST", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+):undeployModel$"), "UndeployModel"),
    ("POST", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+):predict$"), "Predict"),
    ("POST", re.compile(rf"^/v1/({_LOC}/endpoints/[^/:]+):rawPredict$"), "RawPredict"),
    # The generated REST transports poll operations under /ui/ first, /v1/ as well.
    ("GET", re.compile(rf"^/(?:v1|ui)/({_LOC}(?:/[a-zA-Z]+/[^/:]+)?/operations/[^/:]+)$"), "GetOperation"),
    ("POST", re.compile(r"^/v2/entries:list$"), "ListLogEntries"),
    # Artifact Registry (artifactregistry.googleapis.com), see artifacts.py.
    ("POST", re.compile(rf"^/v1/({_LOC})/repositories$"), "CreateRepository"),
    ("GET", re.compile(rf"^/v1/({_LOC}/repositories/[^/:]+)$"), "GetRepository"),
]
LOG_NAME = "aiplatform.googleapis.com%2Fprediction_container"
LIST_ENTRIES_FIELDS = {"resourceNames", "resource_names", "projectIds", "project_ids", "filter", "orderBy", "order_by",
                       "pageSize", "page_size", "pageToken", "page_token"}


def _respond(status: int, payload: Any, start_response):
    body = json.dumps(payload).encode()
    start_response(f"{status} {'OK' if status < 400 else 'Error'}", [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(body)))])
    return [body]


class LogStore:
    """Cloud Logging entries written for the serving processes, and `entries:list` over them."""

    def __init__(self) -> None:
        self.entries: deque[dict] = deque(maxlen=200_000)
        self.lock = threading.Lock()
        self._serial = 0

    def write(self, endpoint_name: str, deployed_model_id: str, lines: list[str]) -> None:
        _, project, _, location, _, endpoint_id = endpoint_name.split("/")
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        with self.lock:
            for line in lines:
                self._serial += 1
                self.entries.append({
                    "logName": f"projects/{project}/logs/{LOG_NAME}",
                    "resource": {"type": "aiplatform.googleapis.com/Endpoint", "labels": {
                        "resource_container": project, "location": location, "endpoint_id": endpoint_id, "deployed_model_id": deployed_model_id}},
                    "timestamp": now, "receiveTimestamp": now, "insertId": f"{self._serial:012d}",
                    "severity": "ERROR" if " ERROR " in line or line.startswith("Traceback") else "INFO",
                    "textPayload": line,
                })

    def list(self, body: dict) -> dict:
        unknown = set(body) - LIST_ENTRIES_FIELDS
        if unknown:
            raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}: Cannot find field.")
        resources = body.get("resourceNames") or body.get("resource_names") or [f"projects/{p}" for p in body.get("projectIds", [])]
        if not resources:
            raise ApiError("INVALID_ARGUMENT", "resource_names must name at least one project.")
        projects = {r.split("/")[1] for r in resources if r.startswith("projects/")}
        tests = [_log_clause(c) for c in re.split(r"\s+AND\s+", (body.get("filter") or "").strip()) if c.strip()]
        order = (body.get("orderBy") or body.get("order_by") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc", "timestamp"):
            raise ApiError("INVALID_ARGUMENT", f"order_by {order!r} is not supported: use 'timestamp asc' or 'timestamp desc'.")
        with self.lock:
            found = [e for e in self.entries if e["resource"]["labels"]["resource_container"] in projects and all(t(e) for t in tests)]
        if order == "timestamp desc":
            found.reverse()
        size = int(body.get("pageSize") or body.get("page_size") or 50)
        start = int(body.get("pageToken") or body.get("page_token") or 0)
        page = found[start:start + size]
        out: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(found):
            out["nextPageToken"] = str(start + size)
        return out


def _log_clause(clause: str):
    match = re.fullmatch(r'\s*(resource\.type|resource\.labels\.[a-z_]+|logName|severity|timestamp|insertId)\s*(=|>=|>|<=|<)\s*"([^"]*)"\s*', clause)
    if not match:
        raise ApiError("INVALID_ARGUMENT", f"Unsupported filter expression {clause!r}.")
    field, op, value = match.groups()

    def get(entry):
        if field == "resource.type":
            return entry["resource"]["type"]
        if field.startswith("resource.labels."):
            return entry["resource"]["labels"].get(field.removeprefix("resource.labels."), "")
        return entry.get(field, "")

    compare = {"=": lambda a, b: a == b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}[op]
    return lambda entry: compare(get(entry), value)


def _read_body(environ) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length > 0 else b""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class EmulatorApp:
    def __init__(self, vertex: VertexService, logs: LogStore, faults: Faults, storage_blobs, artifacts: ArtifactRegistry):
        self.vertex = vertex
        self.artifacts = artifacts
        self.logs = logs
        self.faults = faults
        self.storage_blobs = storage_blobs
        self.calls: deque[dict[str, str]] = deque(maxlen=100_000)
        self._calls_lock = threading.Lock()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith("/_cloudml/"):
            return self._control(path, method, environ, start_response)
        raw = _read_body(environ)
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/token" and method == "POST":  # OAuth 2.0, form-encoded
            return _respond(*self.artifacts.token({k: v[-1] for k, v in parse_qs(raw.decode(errors="replace")).items()}), start_response)
        for verb, pattern, action in ROUTES:  # noqa: B007 - `action` is the matched route's, used below
            match = pattern.match(path)
            if match and verb == method:
                break
        else:
            return _respond(404, ApiError("NOT_FOUND", f"The emulator has no method {method} {path}.").body(), start_response)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return _respond(400, ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}").body(), start_response)
        call = {"action": action, "resource": match.group(1) if pattern.groups else "", "user_agent": environ.get("HTTP_USER_AGENT", "")}
        if isinstance(body, dict) and "trafficSplit" in body:  # deployModel / undeployModel / endpoint patches
            call["traffic_split"] = body["trafficSplit"]
        with self._calls_lock:
            self.calls.append(call)
        fault = self.faults.take(action)
        if fault is not None:
            return _respond(fault.status, {"error": {"code": fault.status, "message": fault.message, "status": fault.code}}, start_response)
        try:
            status, payload = self._dispatch(action, match.group(1) if pattern.groups else "", body, raw, query)
        except ApiError as exc:
            return _respond(exc.http_status, exc.body(), start_response)
        return _respond(status, payload, start_response)

    def _dispatch(self, action: str, target: str, body: Any, raw: bytes, query: dict[str, str]) -> tuple[int, Any]:
        v = self.vertex
        from google.protobuf import json_format

        def operation(op) -> tuple[int, Any]:
            return 200, json_format.MessageToDict(op.pb)

        if action == "UploadModel":
            return operation(v.upload_model(target, body, self.storage_blobs))
        if action == "ListModels":
            return 200, v.list_models(target, query.get("filter", ""))
        if action == "GetModel":
            return 200, v.get_model(target)
        if action == "DeleteModel":
            return operation(v.delete_model(target))
        if action == "CreateEndpoint":
            return operation(v.create_endpoint(target, body, query.get("endpointId") or query.get("endpoint_id") or ""))
        if action == "ListEndpoints":
            return 200, v.list_endpoints(target, query.get("filter", ""))
        if action == "GetEndpoint":
            return 200, v.get_endpoint(target)
        if action == "UpdateEndpoint":
            return 200, v.update_endpoint(target, body, query.get("updateMask") or query.get("update_mask") or "")
        if action == "DeleteEndpoint":
            return operation(v.delete_endpoint(target))
        if action == "DeployModel":
            return operation(v.deploy_model(target, body))
        if action == "UndeployModel":
            return operation(v.undeploy_model(target, body))
        if action in ("Predict", "RawPredict"):
            return v.predict(target, body, raw, raw_predict=action == "RawPredict")
        if action == "GetOperation":
            return 200, v.get_operation(target)
        if action == "ListLogEntries":
            return 200, self.logs.list(body if isinstance(body, dict) else {})
        if action == "CreateRepository":
            return 200, self.artifacts.create(target, query.get("repositoryId") or query.get("repository_id") or "", body)
        if action == "GetRepository":
            return 200, self.artifacts.get(target)
        raise ApiError("NOT_FOUND", f"no handler for {action}")

    def _control(self, path: str, method: str, environ, start_response):
        if path == "/_cloudml/health":
            return _respond(200, {"ok": True}, start_response)
        if path == "/_cloudml/faults":
            if method == "POST":
                spec = json.loads(_read_body(environ) or b"{}")
                self.faults.add(Fault(**spec))
            elif method == "DELETE":
                self.faults.clear()
            return _respond(200, self.faults.pending(), start_response)
        if path == "/_cloudml/fleet":
            return _respond(200, self.vertex.fleet(), start_response)
        if path == "/_cloudml/calls":
            with self._calls_lock:
                calls = list(self.calls)
                if method == "DELETE":
                    self.calls.clear()
            return _respond(200, calls, start_response)
        return _respond(404, {"error": f"no control route {path}"}, start_response)


class EmulatorServer:
    """The emulator in this process (threads): `start()`, `url`, `storage_url`, `stop()`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8085, storage_port: int = 0, state_dir: Path | None = None,
                 provisioning_delay: float = 1.0, health_timeout: float = 180.0):
        self.host, self.port = host, port
        self.storage_port = storage_port
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="cloudml-gcp-emulator-"))
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.logs = LogStore()
        self.faults = Faults()
        self.vertex: VertexService | None = None
        self.app: EmulatorApp | None = None
        self.artifacts = ArtifactRegistry(self.state_dir / "artifacts", record=self._record)
        self.containers = ContainerHost(self.artifacts.registry, credentials=self.artifacts.pull_credentials)
        self.key_file: Path | None = None
        self._server: Any = None  # the WSGI server and the GCS emulator, once started
        self._storage: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def storage_url(self) -> str:
        return f"http://{self.host}:{self.storage_port}"

    def start(self) -> EmulatorServer:
        import logging
        import os

        from gcp_storage_emulator.server import create_server as create_storage

        from cloudml.emulators.serving_process import free_port

        self.storage_port = self.storage_port or free_port()
        logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
        self._storage = create_storage(self.host, self.storage_port, in_memory=True)
        self._storage.start()
        # The emulator's own storage client (artifact checks) goes to the GCS emulator too.
        os.environ["STORAGE_EMULATOR_HOST"] = self.storage_url
        self.vertex = VertexService(self.state_dir / "nodes", storage_host=self.storage_url, provisioning_delay=self.provisioning_delay,
                                    health_timeout=self.health_timeout, log_sink=self.logs.write,
                                    containers=self.containers)
        self.artifacts.start()
        app = self.app = EmulatorApp(self.vertex, self.logs, self.faults, self._blobs, self.artifacts)
        self._server = make_server(self.host, self.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.port = self._server.server_address[1]
        self.key_file = self.artifacts.write_key_file(f"{self.url}/token", PROJECT)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="gcp-emulator")
        self._thread.start()
        return self

    @property
    def registry_host(self) -> str | None:
        return self.artifacts.registry.host if self.artifacts.registry.running else None

    def _record(self, action: str, user_agent: str) -> None:
        if self.app is not None:
            with self.app._calls_lock:  # noqa: SLF001 - the app's own call log
                self.app.calls.append({"action": action, "resource": "", "user_agent": user_agent})

    def _blobs(self, uri: str) -> list[str]:
        """Object names under a gs:// folder, relative to it (what the Vertex service agent can read)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
        try:
            return [b.name[len(prefix):] for b in client.list_blobs(bucket, prefix=prefix)]
        except Exception:  # noqa: BLE001 - no such bucket reads as "no files"
            return []

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.vertex is not None:
            self.vertex.stop_all()
        self.containers.close()
        if self._storage is not None:
            self._storage.stop()
            self._storage = None
        self.artifacts.stop()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def client_env(url: str, storage_url: str, *, project: str = PROJECT, location: str = LOCATION, registry_host: str | None = None) -> dict[str, str]:
    """Environment for google-cloud clients and the gcp provider to use the emulator."""
    registry = {"CLOUDML_GCP_ARTIFACT_REGISTRY_ENDPOINT": url, "CLOUDML_GCP_REGISTRY_HOST": registry_host} if registry_host else {}
    return {**registry,
        "STORAGE_EMULATOR_HOST": storage_url,
        "GOOGLE_CLOUD_PROJECT": project,
        "CLOUDML_GCP_PROJECT": project,
        "CLOUDML_GCP_LOCATION": location,
        "CLOUDML_GCP_API_ENDPOINT": url,
        "CLOUDML_GCP_LOGGING_ENDPOINT": url,
        "CLOUDML_GCP_CREDENTIALS": "anonymous",
    }
