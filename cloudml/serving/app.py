"""The ASGI application: every cloud's serving contract over one loaded model.

Routes
  SageMaker   GET /ping, POST /invocations (application/json, application/jsonlines, text/csv)
  Vertex AI   GET $AIP_HEALTH_ROUTE (/health), POST $AIP_PREDICT_ROUTE (/predict)
  Azure ML    GET / (liveness), GET /ready, POST /score
  TF Serving  GET /v1/models/{m}[/versions/{v}][/metadata], POST /v1/models/{m}[/versions/{v}]:predict
  cloudml     GET /metrics (Prometheus text), GET /cloudml/manifest
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cloudml.serving.batching import Batcher, BatchingConfig
from cloudml.serving.metrics import ServingMetrics
from cloudml.serving.model import ServedModel
from cloudml.serving.workers import WorkerPool
from cloudml.serving.requests import (
    BadRequest,
    Batch,
    batch_from_columns,
    batch_from_instances,
    dumps,
    jsonable,
    parse_csv,
    parse_json,
    parse_jsonlines,
    signature_summary,
    split_body,
)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
LOG_FLUSH_SECONDS = 0.1
access_log = logging.getLogger("cloudml.serving.access")
log = logging.getLogger("cloudml.serving")

JSON_TYPES = {"application/json", "text/json"}
JSONLINES_TYPES = {"application/jsonlines", "application/jsonl", "application/x-jsonlines"}
CSV_TYPES = {"text/csv"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


def _accepts_json(accept: str) -> bool:
    """Whether an Accept header admits application/json. It is a list of media ranges, each with
    an optional q (`text/csv, application/json;q=0.5`), so any range with q > 0 can match."""
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media not in ("application/json", "application/*", "*/*", ""):
            continue
        q = next((p.partition("=")[2].strip() for p in params if p.partition("=")[0].strip() == "q"), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True  # a malformed q is not a reason to refuse the response
    return False


# TF Serving's DataType enum names where they differ from "DT_" + the numpy name.
_TF_DTYPE_NAMES = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "string": "DT_STRING"}


class ModelService:
    """The request handlers, bound to one model."""

    def __init__(self, model: ServedModel, *, max_body_bytes: int, batching: BatchingConfig, metrics: ServingMetrics):
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.batcher = Batcher(model.run, config=batching, metrics=metrics)

    # --- plumbing -------------------------------------------------------------------------
    async def body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BadRequest(f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes} bytes; send fewer instances per request", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest(f"request body exceeds the limit of {self.max_body_bytes} bytes; send fewer instances per request", status=413)
            chunks.append(chunk)
        if not size:
            raise BadRequest("request body is empty; send {\"instances\": [...]}", expected=signature_summary(self.model.signature))
        return b"".join(chunks)

    def _require_json(self, request: Request) -> None:
        media = _media_type(request)
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise BadRequest(f"unsupported Content-Type {media!r}; send application/json", status=415)

    def _require_ready(self) -> None:
        if not self.model.ready:
            raise BadRequest("the model is still loading; retry shortly", status=503)

    def _check_model(self, request: Request) -> None:
        params = request.path_params
        if params.get("model_name", self.model.name) != self.model.name:
            raise BadRequest(f"model {params['model_name']!r} is not served here; this server serves {self.model.name!r}", status=404)
        version = params.get("version")
        if version is not None and version != str(self.model.version):
            raise BadRequest(f"version {version} of {self.model.name!r} is not served here; version {self.model.version} is", status=404)

    async def _infer(self, batch: Batch) -> dict[str, Any]:
        """Outputs by name, batch first: an array, or a list of per-instance arrays when groups
        of different input shapes (sequences) gave differently shaped outputs."""
        if len(batch.groups) == 1:
            return await self.batcher.run(batch.groups[0][1])
        results = await asyncio.gather(*(self.batcher.run(arrays) for _, arrays in batch.groups))
        rows: dict[str, list[Any]] = {name: [None] * batch.size for name in results[0]}
        for (indices, _), outputs in zip(batch.groups, results):
            for name, values in outputs.items():
                for row, index in enumerate(indices):
                    rows[name][index] = values[row]
        return {name: np.stack(r) if len({np.shape(v) for v in r}) == 1 else r for name, r in rows.items()}

    async def _predict_rows(self, instances: list[Any]) -> Any:
        batch = batch_from_instances(instances, self.model.signature)
        outputs = await self._infer(batch)
        if len(outputs) == 1:
            return jsonable_rows(next(iter(outputs.values())))
        # Several outputs: one object per instance, like TF Serving.
        return [{name: _row(values, i) for name, values in outputs.items()} for i in range(batch.size)]

    async def _predict_columns(self, columns: Any) -> Any:
        arrays = batch_from_columns(columns, self.model.signature)
        outputs = await self.batcher.run(arrays)
        if len(outputs) == 1:
            return jsonable(next(iter(outputs.values())))
        return {name: jsonable(values) for name, values in outputs.items()}

    async def _predict_json(self, request: Request, *, keys=("instances",), columnar=True) -> Response:
        self._require_ready()
        self._require_json(request)
        kind, value = split_body(parse_json(await self.body(request)), keys=keys, columnar=columnar)
        if kind == "columns":
            return json_response({"outputs": await self._predict_columns(value)})
        return json_response({"predictions": await self._predict_rows(value)})

    # --- health ---------------------------------------------------------------------------
    async def ping(self, request: Request) -> Response:
        if self.model.ready:
            return json_response({"status": "ready", "model": self.model.name, "version": self.model.version, "pid": os.getpid()})
        return json_response({"status": "loading"}, status=503)

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def alive(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    # --- SageMaker ------------------------------------------------------------------------
    async def invocations(self, request: Request) -> Response:
        self._require_ready()
        media = _media_type(request)
        accept = request.headers.get("accept", "application/json")
        if not _accepts_json(accept):
            raise BadRequest(f"cannot answer with Accept {accept!r}; this endpoint answers application/json", status=406)
        if media in JSONLINES_TYPES:
            instances = parse_jsonlines(await self.body(request))
        elif media in CSV_TYPES:
            instances = self._csv_instances(parse_csv(await self.body(request)))
        elif media in JSON_TYPES or media.endswith("+json"):
            return await self._predict_json(request)
        else:
            raise BadRequest(f"unsupported Content-Type {media!r}; use application/json, application/jsonlines or text/csv", status=415)
        return json_response({"predictions": await self._predict_rows(instances)})

    def _csv_instances(self, rows: list[list[float]]) -> list[Any]:
        inputs = self.model.signature.inputs
        if len(inputs) != 1:
            raise BadRequest("text/csv works only for models with one input; send JSON with an object per instance", status=415)
        spec = next(iter(inputs.values()))
        shape = spec.instance_shape
        if shape and len(shape) > 1 and all(d is not None for d in shape):
            size = int(np.prod(shape))
            for number, row in enumerate(rows, start=1):
                if len(row) != size:
                    raise BadRequest(f"CSV row {number} has {len(row)} values; expected {size} ({spec.describe()}, flattened)")
            return [np.asarray(row).reshape(shape) for row in rows]
        return rows

    # --- Vertex AI and Azure ML --------------------------------------------------------------
    async def vertex_predict(self, request: Request) -> Response:
        return await self._predict_json(request, columnar=False)

    async def azure_score(self, request: Request) -> Response:
        return await self._predict_json(request, keys=("instances", "data", "input_data"), columnar=False)

    # --- TF Serving REST -----------------------------------------------------------------
    async def tfs_status(self, request: Request) -> Response:
        self._check_model(request)
        state = "AVAILABLE" if self.model.ready else "LOADING"
        return json_response({"model_version_status": [{"version": str(self.model.version), "state": state, "status": {"error_code": "OK", "error_message": ""}}]})

    async def tfs_metadata(self, request: Request) -> Response:
        self._check_model(request)
        sig = self.model.signature

        def tensors(specs):
            return {
                name: {
                    "dtype": _TF_DTYPE_NAMES.get(spec.dtype, "DT_" + spec.dtype.upper()),
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in (spec.shape or [])], "unknown_rank": spec.shape is None},
                    "name": name,
                }
                for name, spec in specs.items()
            }

        return json_response({
            "model_spec": {"name": self.model.name, "signature_name": "", "version": str(self.model.version)},
            "metadata": {"signature_def": {"signature_def": {sig.name: {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs), "method_name": "tensorflow/serving/predict"}}}},
        })

    async def tfs_predict(self, request: Request) -> Response:
        self._check_model(request)
        self._require_ready()
        self._require_json(request)
        payload = parse_json(await self.body(request))
        if isinstance(payload, dict):
            signature = payload.get("signature_name", self.model.signature.name)
            if signature != self.model.signature.name:
                raise BadRequest(f"signature {signature!r} is not served; use {self.model.signature.name!r}")
        kind, value = split_body(payload)
        if kind == "columns":
            return json_response({"outputs": await self._predict_columns(value)})
        return json_response({"predictions": await self._predict_rows(value)})

    async def metadata_summary(self, request: Request) -> Response:
        return json_response(self.model.manifest.model_dump(mode="json"))


def _row(values: Any, index: int) -> Any:
    return jsonable(values[index]) if hasattr(values[index], "dtype") else values[index]


def jsonable_rows(values: Any) -> Any:
    if isinstance(values, list):
        return [jsonable(v) for v in values]
    return jsonable(values)


def client_error(exc: BadRequest) -> Response:
    return json_response(exc.body(), status=exc.status)


def internal_error(exc: Exception, method: str, path: str) -> Response:
    log.exception("unexpected error while serving %s %s", method, path)
    return json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)


async def _bad_request(request: Request, exc: BadRequest) -> Response:
    return client_error(exc)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    response = json_response({"error": message}, status=exc.status_code)
    # Keep what Starlette attached, such as the Allow header a 405 must carry.
    response.headers.update(exc.headers or {})
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    return internal_error(exc, request.method, request.url.path)


class RawRequest:
    """The little of a Starlette `Request` the handlers use, read straight off the ASGI scope."""

    __slots__ = ("headers", "path_params", "_receive")

    def __init__(self, scope, receive):
        # ASGI header names are already lower-case, which is how the handlers look them up.
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.path_params: dict[str, str] = {}
        self._receive = receive

    async def stream(self):
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                return


def _closing(send):
    """Answer with `Connection: close`, so a kept-alive client reconnects (to the new server)."""

    async def send_closing(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return send_closing


class ServingApp:
    """The ASGI entry point: the prediction and health routes of the clouds' contracts go
    straight to their handlers; everything else (TF Serving's parameterised routes, 404/405,
    lifespan) goes through Starlette. Starlette's routing and middleware cost about 40% of the
    no-op model's throughput (benchmarks/README.md), and these routes need none of it.

    Also writes one access-log line per request with its latency, straight to stderr and
    gathered into one write every `LOG_FLUSH_SECONDS` (through `logging`, one write per request,
    the log cost about a sixth of the throughput).
    """

    def __init__(self, starlette: Starlette, metrics: ServingMetrics, direct: dict[tuple[str, str], Any]):
        self.starlette = starlette
        self.metrics = metrics
        self.direct = direct
        self._second = -1
        self._stamp = ""
        self._log_lines: list[str] = []
        self.draining = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.starlette(scope, receive, send)
        start = time.perf_counter()
        status = 500
        handler = self.direct.get((scope["method"], scope["path"]))
        if self.draining:
            send = _closing(send)
        try:
            if handler is None:
                async def send_and_note_status(message):
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await self.starlette(scope, receive, send_and_note_status)
            else:
                response = await self._direct(handler, scope, receive)
                status = response.status_code
                await response(scope, receive, send)
        finally:
            self.metrics.count_response(status)
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, status, (time.perf_counter() - start) * 1000)

    async def _direct(self, handler, scope, receive) -> Response:
        try:
            return await handler(RawRequest(scope, receive))
        except BadRequest as exc:
            return client_error(exc)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening; only the log sees it
        except Exception as exc:
            return internal_error(exc, scope["method"], scope["path"])

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def _log(self, scope, status: int, elapsed_ms: float) -> None:
        client = (scope.get("client") or ("-", 0))[0]
        self._log_lines.append(f'{self._timestamp(time.time())} INFO cloudml.serving.access: {client} "{scope["method"]} {scope["path"]}" {status} {elapsed_ms:.1f}ms\n')
        if len(self._log_lines) == 1:
            asyncio.get_running_loop().call_later(LOG_FLUSH_SECONDS, self.flush_log)

    def flush_log(self) -> None:
        data, self._log_lines = "".join(self._log_lines).encode(), []
        try:
            sys.stderr.flush()  # keep the order with lines written through `logging`
            fd = sys.stderr.fileno()
            while data:
                data = data[os.write(fd, data):]
        except (OSError, ValueError):
            pass  # a closed or full log must never fail a request


def create_app(
    model: ServedModel,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchingConfig | None = None,
    workers: "WorkerPool | None" = None,
    load: bool = True,
):
    metrics = ServingMetrics()
    service = ModelService(model, max_body_bytes=max_body_bytes, batching=batching or BatchingConfig(), metrics=metrics)
    health_route = os.environ.get("AIP_HEALTH_ROUTE", "/health")
    predict_route = os.environ.get("AIP_PREDICT_ROUTE", "/predict")
    routes = [
        Route("/ping", service.ping, methods=["GET"]),
        Route("/invocations", service.invocations, methods=["POST"]),
        Route(health_route, service.ping, methods=["GET"]),
        Route(predict_route, service.vertex_predict, methods=["POST"]),
        Route("/", service.alive, methods=["GET"]),
        Route("/ready", service.ping, methods=["GET"]),
        Route("/score", service.azure_score, methods=["POST"]),
        Route("/cloudml/manifest", service.metadata_summary, methods=["GET"]),
        Route("/metrics", service.prometheus, methods=["GET"]),
        Route("/v1/models/{model_name}:predict", service.tfs_predict, methods=["POST"]),
        Route("/v1/models/{model_name}/versions/{version}:predict", service.tfs_predict, methods=["POST"]),
        Route("/v1/models/{model_name}/metadata", service.tfs_metadata, methods=["GET"]),
        Route("/v1/models/{model_name}/versions/{version}/metadata", service.tfs_metadata, methods=["GET"]),
        Route("/v1/models/{model_name}", service.tfs_status, methods=["GET"]),
        Route("/v1/models/{model_name}/versions/{version}", service.tfs_status, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if load and not model.ready:
            # Loading before the server listens means nothing is routed here until it can answer.
            await run_in_threadpool(model.load)
        if workers is not None:
            await workers.start()
        yield
        if workers is not None:
            await workers.stop()
        await service.batcher.close()
        serving.flush_log()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={BadRequest: _bad_request, HTTPException: _http_error, Exception: _server_error},
    )
    direct = {(method, route.path): route.endpoint for route in routes if "{" not in route.path for method in route.methods if method != "HEAD"}
    serving = ServingApp(app, metrics, direct)
    return serving
