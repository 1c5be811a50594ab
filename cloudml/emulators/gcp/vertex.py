"""The Vertex AI v1 resources the emulator keeps, and how the service treats them.

Request bodies are parsed into the `google.cloud.aiplatform_v1` protobuf messages with unknown
fields refused, so a request the real API would reject as malformed is rejected here too.
Resources live as those messages and are answered in their JSON mapping. Long-running calls
return an Operation that is `done: false` until the work (a delay, or a real serving process
becoming healthy) finishes. Errors carry Google's JSON error shape and canonical codes.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudml.emulators.container import ContainerHost
from cloudml.emulators.gcp.hosting import PredictionNode

# Canonical codes (google.rpc.Code) and their HTTP statuses.
CODES = {
    "INVALID_ARGUMENT": (3, 400), "FAILED_PRECONDITION": (9, 400), "NOT_FOUND": (5, 404), "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403), "RESOURCE_EXHAUSTED": (8, 429), "INTERNAL": (13, 500), "UNAVAILABLE": (14, 503),
    "UNAUTHENTICATED": (16, 401), "DEADLINE_EXCEEDED": (4, 504), "ABORTED": (10, 409),
}
STATUS_FOR_CODE = {code: name for name, (code, _) in CODES.items()}
RESOURCE_ID = re.compile(r"^(?:[a-z][a-z0-9-]{0,61}[a-z0-9]|[a-z]|[1-9][0-9]{0,8})$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
# Machine types Vertex AI online prediction offers (a subset of
# https://cloud.google.com/vertex-ai/docs/predictions/configure-compute#machine-types).
MACHINE_TYPES = frozenset(
    [f"n1-{kind}-{n}" for kind in ("standard", "highmem", "highcpu") for n in (2, 4, 8, 16, 32, 64, 96)]
    + [f"e2-{kind}-{n}" for kind in ("standard", "highmem", "highcpu") for n in (2, 4, 8, 16, 32)]
    + [f"n2-{kind}-{n}" for kind in ("standard", "highmem", "highcpu") for n in (2, 4, 8, 16, 32, 48, 64, 80)]
    + [f"c2-standard-{n}" for n in (4, 8, 16, 30, 60)]
    + [f"g2-standard-{n}" for n in (4, 8, 12, 16, 24, 32, 48, 96)]
    + ["a2-highgpu-1g", "a2-highgpu-2g", "a2-highgpu-4g", "a2-highgpu-8g", "a2-ultragpu-1g"]
)
TF_IMAGE = re.compile(r"^[a-z]+-docker\.pkg\.dev/vertex-ai/prediction/tf2?-(cpu|gpu)\.")


class ApiError(Exception):
    """A Google API error: `{"error": {"code": 404, "message": ..., "status": "NOT_FOUND"}}`."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message
        self.http_status = CODES.get(status, (2, 500))[1]

    def body(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def parse(message_cls, data: Any, what: str):
    """`data` (the JSON of a request body) as a `message_cls` protobuf; 400 when it does not fit."""
    from google.protobuf import json_format

    message = message_cls.pb()()
    if not isinstance(data, dict):
        raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. Expected an object for {what}.")
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        # The first line names the field; the rest lists every field of the message.
        raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received for {what}. {str(exc).splitlines()[0]}") from None
    return message_cls.wrap(message)


def to_json(message) -> dict:
    from google.protobuf import json_format

    pb = type(message).pb(message) if hasattr(type(message), "pb") else message
    return json_format.MessageToDict(pb)


def check_labels(labels: dict[str, str], what: str) -> None:
    if len(labels) > 64:
        raise ApiError("INVALID_ARGUMENT", f"{what} has more than 64 labels.")
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise ApiError("INVALID_ARGUMENT", f"Label key {key!r} of {what} is invalid: keys must start with a lowercase letter "
                                               "and hold at most 63 lowercase letters, digits, '_' or '-'.")
        if not LABEL_VALUE.match(value):
            raise ApiError("INVALID_ARGUMENT",
                           f"Label value {value!r} (key {key!r}) of {what} is invalid: values hold at most 63 lowercase letters, digits, '_' or '-'.")


def list_filter(text: str) -> Callable[[Any], bool]:
    """The subset of AIP-160 filters the emulator understands: `labels.k="v"`, `display_name="x"`,
    joined by AND. Anything else is refused rather than ignored."""
    clauses = [c.strip() for c in re.split(r"\s+AND\s+", text.strip()) if c.strip()] if text else []
    tests: list[tuple[str | None, str]] = []  # (label key, or None for the display name; the value wanted)
    for clause in clauses:
        match = re.fullmatch(r'(labels\.[a-z][a-z0-9_-]*|display_name|displayName)\s*=\s*"([^"]*)"', clause)
        if not match:
            raise ApiError("INVALID_ARGUMENT", f"Unsupported filter {clause!r} (the emulator knows labels.KEY=\"VALUE\" and display_name=\"NAME\").")
        field, value = match.groups()
        tests.append((field.removeprefix("labels.") if field.startswith("labels.") else None, value))

    def keep(resource: Any) -> bool:
        return all((resource.labels.get(key) if key is not None else resource.display_name) == value for key, value in tests)

    return keep


def _numeric_id() -> str:
    return str(random.randint(10**17, 10**18 - 1))


class Operation:
    """A long-running operation; `finish` fills in the response or the error."""

    def __init__(self, name: str, metadata):
        from google.longrunning import operations_pb2

        self.pb = operations_pb2.Operation(name=name, done=False)
        self.pb.metadata.Pack(type(metadata).pb(metadata))

    def finish(self, *, response=None, error: ApiError | None = None) -> None:
        if error is not None:
            self.pb.error.code = CODES.get(error.status, (2, 500))[0]
            self.pb.error.message = error.message
        elif response is not None:
            self.pb.response.Pack(type(response).pb(response) if hasattr(type(response), "pb") else response)
        else:
            from google.protobuf import empty_pb2

            self.pb.response.Pack(empty_pb2.Empty())
        self.pb.done = True


class VertexService:
    def __init__(self, root: Path, *, storage_host: str, provisioning_delay: float, health_timeout: float, log_sink,
                 containers: ContainerHost | None = None):
        from google.cloud import aiplatform_v1

        self.v1 = aiplatform_v1
        self.root = root
        self.storage_host = storage_host
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.log_sink = log_sink  # (endpoint name, deployed model id, lines)
        self.containers = containers  # runs the Models' images that are in the emulator's Artifact Registry
        self.models: dict[str, Any] = {}
        self.endpoints: dict[str, Any] = {}
        self.operations: dict[str, Operation] = {}
        self.nodes: dict[tuple[str, str], PredictionNode] = {}  # (endpoint name, deployed model id)
        self.reserved: set[str] = set()  # names of resources whose create operation is running
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        # Model servers log continuously; Cloud Logging gets their new lines every half second.
        threading.Thread(target=self._ship_forever, daemon=True, name="log-shipper").start()

    def _ship_forever(self) -> None:
        while not self.stopping.wait(0.5):
            with self.lock:
                nodes = list(self.nodes.values())
            for node in nodes:
                node.ship_logs()

    # --- helpers --------------------------------------------------------------------------
    def _now(self):
        from google.protobuf import timestamp_pb2

        stamp = timestamp_pb2.Timestamp()
        stamp.GetCurrentTime()
        return stamp

    def _operation(self, resource: str, metadata_cls) -> Operation:
        meta = metadata_cls(generic_metadata=self.v1.GenericOperationMetadata(create_time=self._now(), update_time=self._now()))
        op = Operation(f"{resource}/operations/{_numeric_id()}", meta)
        with self.lock:
            self.operations[op.pb.name] = op
        return op

    def _later(self, work: Callable[[], None], delay: float | None = None) -> None:
        def run():
            if self.stopping.wait(self.provisioning_delay if delay is None else delay):
                return
            work()

        threading.Thread(target=run, daemon=True).start()

    def _model(self, name: str):
        with self.lock:
            model = self.models.get(name)
        if model is None:
            raise ApiError("NOT_FOUND", f'The Model "{name}" does not exist.')
        return model

    def _endpoint(self, name: str):
        with self.lock:
            endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ApiError("NOT_FOUND", f'The Endpoint "{name}" does not exist.')
        return endpoint

    def _check_id(self, value: str, kind: str) -> None:
        if not RESOURCE_ID.match(value):
            raise ApiError("INVALID_ARGUMENT",
                           f"Invalid {kind} id {value!r}: use up to 63 lowercase letters, digits and hyphens starting with a letter, or up to 9 digits.")

    # --- models ---------------------------------------------------------------------------
    def upload_model(self, parent: str, body: dict, blobs: Callable[[str], list[str]]) -> Operation:
        request = parse(self.v1.UploadModelRequest, body, "UploadModelRequest")
        model = request.model
        if not model.display_name:
            raise ApiError("INVALID_ARGUMENT", "Model display_name must be set.")
        if not model.container_spec.image_uri:
            raise ApiError("INVALID_ARGUMENT", "Model container_spec.image_uri must be set.")
        check_labels(dict(model.labels), "Model")
        if model.artifact_uri:
            if not model.artifact_uri.startswith("gs://"):
                raise ApiError("INVALID_ARGUMENT", f"Model artifact_uri {model.artifact_uri!r} must be a gs:// URI.")
            names = blobs(model.artifact_uri)
            if not names:
                raise ApiError("INVALID_ARGUMENT", f"There are no files under \"{model.artifact_uri}\" (or the service agent cannot read them).")
            top_level_graph = any(n in ("saved_model.pb", "saved_model.pbtxt") for n in names)
            if TF_IMAGE.match(model.container_spec.image_uri) and not top_level_graph:
                raise ApiError("INVALID_ARGUMENT",
                               f"Model directory {model.artifact_uri} is expected to contain exactly one of: [saved_model.pb, saved_model.pbtxt].")
        if request.model_id:
            self._check_id(request.model_id, "model")
        model_id = request.model_id or _numeric_id()
        name = f"{parent}/models/{model_id}"
        with self.lock:
            if name in self.models or name in self.reserved:
                raise ApiError("ALREADY_EXISTS", f'Model with id "{model_id}" already exists in {parent}.')
            self.reserved.add(name)
        model.name = name
        model.version_id = "1"
        model.version_aliases = ["default"]
        op = self._operation(name, self.v1.UploadModelOperationMetadata)

        def done():
            now = self._now()
            model.create_time = model.update_time = model.version_create_time = model.version_update_time = now
            with self.lock:
                self.models[name] = model
                self.reserved.discard(name)
                op.finish(response=self.v1.UploadModelResponse(model=name, model_version_id="1"))

        self._later(done)
        return op

    def get_model(self, name: str) -> dict:
        return to_json(self._model(name))

    def list_models(self, parent: str, filter_text: str) -> dict:
        keep = list_filter(filter_text)
        with self.lock:
            found = [m for n, m in sorted(self.models.items()) if n.startswith(parent + "/") and keep(m)]
        return {"models": [to_json(m) for m in found]} if found else {}

    def delete_model(self, name: str) -> Operation:
        model = self._model(name)
        if model.deployed_models:
            where = ", ".join(ref.endpoint for ref in model.deployed_models)
            raise ApiError("FAILED_PRECONDITION", f'The Model "{name}" is deployed or being deployed at the following Endpoint(s): {where}.')
        op = self._operation(name, self.v1.DeleteOperationMetadata)
        with self.lock:
            del self.models[name]
        self._later(lambda: op.finish())
        return op

    # --- endpoints ------------------------------------------------------------------------
    def create_endpoint(self, parent: str, body: dict, endpoint_id: str) -> Operation:
        endpoint = parse(self.v1.Endpoint, body, "Endpoint")
        if not endpoint.display_name:
            raise ApiError("INVALID_ARGUMENT", "Endpoint display_name must be set.")
        check_labels(dict(endpoint.labels), "Endpoint")
        if endpoint_id:
            self._check_id(endpoint_id, "endpoint")
        endpoint_id = endpoint_id or _numeric_id()
        name = f"{parent}/endpoints/{endpoint_id}"
        with self.lock:
            if name in self.endpoints or name in self.reserved:
                raise ApiError("ALREADY_EXISTS", f'Endpoint with id "{endpoint_id}" already exists in {parent}.')
            self.reserved.add(name)
        endpoint.name = name
        op = self._operation(name, self.v1.CreateEndpointOperationMetadata)

        def done():
            endpoint.create_time = endpoint.update_time = self._now()
            endpoint.etag = _numeric_id()
            with self.lock:
                self.endpoints[name] = endpoint
                self.reserved.discard(name)
                op.finish(response=endpoint)

        self._later(done)
        return op

    def get_endpoint(self, name: str) -> dict:
        return to_json(self._endpoint(name))

    def list_endpoints(self, parent: str, filter_text: str) -> dict:
        keep = list_filter(filter_text)
        with self.lock:
            found = [e for n, e in sorted(self.endpoints.items()) if n.startswith(parent + "/") and keep(e)]
        return {"endpoints": [to_json(e) for e in found]} if found else {}

    def update_endpoint(self, name: str, body: dict, update_mask: str) -> dict:
        patch = parse(self.v1.Endpoint, body, "Endpoint")
        endpoint = self._endpoint(name)
        fields = [f.strip() for f in update_mask.split(",") if f.strip()]
        if not fields:
            raise ApiError("INVALID_ARGUMENT", "update_mask must name the fields to update.")
        with self.lock:
            for field in fields:
                snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), field)
                if snake == "labels":
                    check_labels(dict(patch.labels), "Endpoint")
                    endpoint.labels = dict(patch.labels)
                elif snake == "traffic_split":
                    self._check_traffic(endpoint, dict(patch.traffic_split), new_model=False)
                    endpoint.traffic_split = dict(patch.traffic_split)
                elif snake in ("display_name", "description"):
                    setattr(endpoint, snake, getattr(patch, snake))
                else:
                    raise ApiError("INVALID_ARGUMENT", f"Field {field!r} of Endpoint cannot be updated.")
            endpoint.update_time = self._now()
            endpoint.etag = _numeric_id()
        return to_json(endpoint)

    def _check_traffic(self, endpoint, split: dict[str, int], *, new_model: bool) -> None:
        if not split:
            return
        known = {dm.id for dm in endpoint.deployed_models} | ({"0"} if new_model else set())
        unknown = sorted(set(split) - known)
        if unknown:
            raise ApiError("INVALID_ARGUMENT", f"traffic_split refers to unknown DeployedModel id(s) {', '.join(unknown)} of Endpoint {endpoint.name}.")
        if any(v < 0 for v in split.values()) or sum(split.values()) != 100:
            raise ApiError("INVALID_ARGUMENT", f"The traffic_split percentages must add up to 100 (got {sum(split.values())}).")

    def delete_endpoint(self, name: str) -> Operation:
        endpoint = self._endpoint(name)
        if endpoint.deployed_models:
            raise ApiError("FAILED_PRECONDITION", f'The Endpoint "{name}" has deployed or being deployed DeployedModel(s). Undeploy them first.')
        op = self._operation(name, self.v1.DeleteOperationMetadata)
        with self.lock:
            del self.endpoints[name]
        self._later(lambda: op.finish())
        return op

    # --- deploy / undeploy ----------------------------------------------------------------
    def deploy_model(self, endpoint_name: str, body: dict) -> Operation:
        request = parse(self.v1.DeployModelRequest, body, "DeployModelRequest")
        endpoint = self._endpoint(endpoint_name)
        deployed = request.deployed_model
        model = self._model(deployed.model)
        resources = deployed.dedicated_resources
        machine = resources.machine_spec.machine_type
        if not machine:
            raise ApiError("INVALID_ARGUMENT", "deployed_model.dedicated_resources.machine_spec.machine_type must be set for a custom-trained model.")
        if machine not in MACHINE_TYPES:
            raise ApiError("INVALID_ARGUMENT", f'Machine type "{machine}" is not supported for online prediction.')
        if resources.min_replica_count < 1:
            raise ApiError("INVALID_ARGUMENT", "dedicated_resources.min_replica_count must be at least 1.")
        if resources.max_replica_count and resources.max_replica_count < resources.min_replica_count:
            raise ApiError("INVALID_ARGUMENT", "dedicated_resources.max_replica_count must not be below min_replica_count.")
        split = dict(request.traffic_split)
        with self.lock:
            self._check_traffic(endpoint, split, new_model=True)
        deployed.id = deployed.id or str(random.randint(10**17, 10**18 - 1))
        deployed.model_version_id = "1"
        deployed.display_name = deployed.display_name or model.display_name
        op = self._operation(endpoint_name, self.v1.DeployModelOperationMetadata)
        with self.lock:
            model.deployed_models.append(self.v1.DeployedModelRef(endpoint=endpoint_name, deployed_model_id=deployed.id))
        threading.Thread(target=self._provision, args=(op, endpoint_name, deployed, model, split), daemon=True).start()
        return op

    def _provision(self, op: Operation, endpoint_name: str, deployed, model, split: dict[str, int]) -> None:
        if self.stopping.wait(self.provisioning_delay):
            return
        spec = model.container_spec
        node = PredictionNode(
            self.root / endpoint_name.rsplit("/", 1)[-1], deployed_model_id=deployed.id, artifact_uri=model.artifact_uri,
            container_env={e.name: e.value for e in spec.env}, predict_route=spec.predict_route, health_route=spec.health_route,
            storage_host=self.storage_host, project=endpoint_name.split("/")[1],
            sink=lambda lines: self.log_sink(endpoint_name, deployed.id, lines), prebuilt=bool(TF_IMAGE.match(spec.image_uri)),
            image=spec.image_uri, containers=self.containers,
        )
        why = node.start().wait_healthy(self.health_timeout, self.stopping)
        with self.lock:
            endpoint = self.endpoints.get(endpoint_name)
            if why is None and endpoint is not None:
                deployed.create_time = self._now()
                endpoint.deployed_models.append(deployed)
                if split:
                    endpoint.traffic_split = {(deployed.id if k == "0" else k): v for k, v in split.items()}
                endpoint.update_time = self._now()
                self.nodes[(endpoint_name, deployed.id)] = node
                op.finish(response=self.v1.DeployModelResponse(deployed_model=deployed))
                return
            refs = [r for r in model.deployed_models if r.deployed_model_id != deployed.id]
            del model.deployed_models[:]
            model.deployed_models.extend(refs)
            reason = why or f"Endpoint {endpoint_name} was deleted during the deployment."
            endpoint_id = endpoint_name.rsplit("/", 1)[-1]
            op.finish(error=ApiError(
                "FAILED_PRECONDITION",
                f"{reason} To find out why, see the model server logs in Cloud Logging "
                f'(resource.type="aiplatform.googleapis.com/Endpoint" resource.labels.endpoint_id="{endpoint_id}").',
            ))
        node.stop()

    def undeploy_model(self, endpoint_name: str, body: dict) -> Operation:
        request = parse(self.v1.UndeployModelRequest, body, "UndeployModelRequest")
        endpoint = self._endpoint(endpoint_name)
        target = request.deployed_model_id
        with self.lock:
            ids = [dm.id for dm in endpoint.deployed_models]
            if target not in ids:
                raise ApiError("NOT_FOUND", f'The DeployedModel with ID "{target}" does not exist in the Endpoint "{endpoint_name}".')
            split = dict(request.traffic_split)
            if split:
                remaining = {dm for dm in ids if dm != target}
                if set(split) - remaining or sum(split.values()) != 100:
                    raise ApiError("INVALID_ARGUMENT", "traffic_split must name only the remaining DeployedModels and add up to 100.")
            elif endpoint.traffic_split.get(target, 0) > 0 and len(ids) > 1:
                raise ApiError("FAILED_PRECONDITION",
                               f'The DeployedModel "{target}" receives {endpoint.traffic_split[target]}% of the traffic of Endpoint "{endpoint_name}": '
                               "give its traffic to other DeployedModels (traffic_split) before undeploying it.")
        op = self._operation(endpoint_name, self.v1.UndeployModelOperationMetadata)

        def done():
            with self.lock:
                current = self.endpoints.get(endpoint_name)
                node = self.nodes.pop((endpoint_name, target), None)
                if current is not None:
                    gone = next((dm for dm in current.deployed_models if dm.id == target), None)
                    keep = [dm for dm in current.deployed_models if dm.id != target]
                    del current.deployed_models[:]
                    current.deployed_models.extend(keep)
                    new_split = split or {k: v for k, v in current.traffic_split.items() if k != target}
                    current.traffic_split = new_split if keep else {}
                    current.update_time = self._now()
                    model = self.models.get(gone.model) if gone is not None else None
                    if model is not None:
                        refs = [r for r in model.deployed_models if not (r.endpoint == endpoint_name and r.deployed_model_id == target)]
                        del model.deployed_models[:]
                        model.deployed_models.extend(refs)
                op.finish(response=self.v1.UndeployModelResponse())
            if node is not None:
                node.stop()

        self._later(done)
        return op

    # --- predict --------------------------------------------------------------------------
    def predict(self, endpoint_name: str, body: dict, raw: bytes, *, raw_predict: bool = False) -> tuple[int, dict]:
        """`predict` checks the body is a PredictRequest and wraps the answer in a PredictResponse;
        `rawPredict` passes both through as they are."""
        if not raw_predict:
            parse(self.v1.PredictRequest, body, "PredictRequest")
        endpoint = self._endpoint(endpoint_name)
        with self.lock:
            split = {k: v for k, v in endpoint.traffic_split.items() if v > 0}
            if not split:
                raise ApiError("FAILED_PRECONDITION", f'The Endpoint "{endpoint_name}" does not have any DeployedModel receiving traffic.')
            chosen = random.choices(list(split), weights=list(split.values()))[0]
            node = self.nodes.get((endpoint_name, chosen))
            deployed = next(dm for dm in endpoint.deployed_models if dm.id == chosen)
        if node is None:
            raise ApiError("UNAVAILABLE", f"DeployedModel {chosen} is not serving.")
        try:
            result = node.request("POST", node.predict_route, raw, {"Content-Type": "application/json"})
        except OSError as exc:
            raise ApiError("UNAVAILABLE", f"The model server of DeployedModel {chosen} did not answer: {exc}") from None
        if result.status != 200:
            # Vertex passes the container's error text on, with the container's 4xx as a 400.
            text = result.body.decode(errors="replace")
            raise ApiError("INVALID_ARGUMENT" if result.status < 500 else "INTERNAL", text)
        payload = result.json()
        if raw_predict:
            return 200, payload
        model = self.models.get(deployed.model)
        return 200, {
            "predictions": payload.get("predictions"),
            "deployedModelId": chosen,
            "model": deployed.model,
            "modelDisplayName": model.display_name if model is not None else "",
            "modelVersionId": deployed.model_version_id or "1",
        }

    # --- operations -----------------------------------------------------------------------
    def get_operation(self, name: str) -> dict:
        from google.protobuf import json_format

        with self.lock:
            op = self.operations.get(name)
            if op is None:
                raise ApiError("NOT_FOUND", f'Operation "{name}" not found.')
            return json_format.MessageToDict(op.pb)

    def fleet(self) -> list[dict]:
        with self.lock:
            return [{"endpoint": e, "deployed_model_id": d, "port": n.port, "pid": n.proc.pid if n.proc else None,
                     "artifact_uri": n.artifact_uri} for (e, d), n in self.nodes.items()]

    def stop_all(self) -> None:
        self.stopping.set()
        with self.lock:
            nodes = list(self.nodes.values())
            self.nodes.clear()
        for node in nodes:
            node.stop()
