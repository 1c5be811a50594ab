"""The ASGI application: every cloud's serving contract over one data plane.

Routes
  SageMaker   GET /ping, POST /invocations (application/json, application/jsonlines, text/csv)
  Vertex AI   GET $AIP_HEALTH_ROUTE (/health), POST $AIP_PREDICT_ROUTE (/predict)
  Azure ML    GET / (liveness), GET /ready, POST /score
  TF Serving  GET /v1/models/{m}[/versions/{v}][/metadata], POST /v1/models/{m}[/versions/{v}]:predict
  cloudml     GET /metrics (Prometheus text), GET /cloudml/manifest

Each contract's adapter (sagemaker.py, vertex.py, azure.py, tfserving.py) decodes its requests
into the data plane's predict call (cloudml.serving.dataplane) and renders the answer; errors
come up from below as cloudml.serving.errors and become HTTP answers in responses.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudml.serving.batching import BatchingConfig
from cloudml.serving.dataplane import DataPlane
from cloudml.serving.errors import ServingError
from cloudml.serving.http.azure import Azure
from cloudml.serving.http.contract import Contract, Handler
from cloudml.serving.http.request import RECEIVED, HttpRequest
from cloudml.serving.http.responses import error_response, internal_error, json_response
from cloudml.serving.http.sagemaker import SageMaker
from cloudml.serving.http.tfserving import TFServing
from cloudml.serving.http.vertex import Vertex
from cloudml.serving.metrics import ServingMetrics
from cloudml.serving.model import ServedModel
from cloudml.serving.workers import WorkerPool

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
LOG_FLUSH_SECONDS = 0.1
access_log = logging.getLogger("cloudml.serving.access")
log = logging.getLogger("cloudml.serving")


class Operations(Contract):
    """cloudml's own routes: Prometheus metrics and the served manifest."""

    def routes(self):
        return [("GET", "/cloudml/manifest", self.manifest), ("GET", "/metrics", self.prometheus)]

    async def prometheus(self, request: HttpRequest) -> Response:
        return Response(self.plane.metrics.render(), media_type="text/plain; version=0.0.4")

    async def manifest(self, request: HttpRequest) -> Response:
        return json_response(self.plane.model.manifest.model_dump(mode="json"))


async def respond(handler: Handler, request: HttpRequest) -> Response:
    """A handler's response, or the error it raised as one: the same on both dispatch paths."""
    try:
        return await handler(request)
    except ServingError as exc:
        return error_response(exc)
    except Exception as exc:
        return internal_error(exc, request.method, request.path)


class RoutedHandler:
    """A handler as a Starlette route's endpoint: an ASGI app, so Starlette builds no `Request`
    of its own and the handler gets the same `HttpRequest` as on the direct path."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler):
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        received = scope.get(RECEIVED) or time.perf_counter()
        response = await respond(self.handler, HttpRequest.from_scope(scope, receive, received))
        await response(scope, receive, send)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    response = json_response({"error": message}, status=exc.status_code)
    # Keep what Starlette attached, such as the Allow header a 405 must carry.
    response.headers.update(exc.headers or {})
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    return internal_error(exc, request.method, request.url.path)


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

    def __init__(self, starlette: Starlette, plane: DataPlane, direct: dict[tuple[str, str], Handler]):
        self.starlette = starlette
        self.plane = plane
        self.metrics = plane.metrics
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
                scope[RECEIVED] = start

                async def send_and_note_status(message):
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await self.starlette(scope, receive, send_and_note_status)
            else:
                response = await respond(handler, HttpRequest.from_scope(scope, receive, start))
                status = response.status_code
                await response(scope, receive, send)
        finally:
            self.metrics.count_response(status)
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, status, (time.perf_counter() - start) * 1000)

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def _log(self, scope, status: int, elapsed_ms: float) -> None:
        client = (scope.get("client") or ("-", 0))[0]
        path = scope["path"]
        if not path.isprintable() or '"' in path:
            # A percent-encoded newline (or quote) in the path must not forge or split a log line.
            path = path.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        self._log_lines.append(f'{self._timestamp(time.time())} INFO cloudml.serving.access: {client} "{scope["method"]} {path}" {status} {elapsed_ms:.1f}ms\n')
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
    workers: WorkerPool | None = None,
    load: bool = True,
):
    plane = DataPlane(model, batching=batching or BatchingConfig(), metrics=ServingMetrics(info=model.describe))
    contracts = [cls(plane, max_body_bytes=max_body_bytes) for cls in (SageMaker, Vertex, Azure, Operations, TFServing)]
    table = [route for contract in contracts for route in contract.routes()]
    routes = [Route(path, RoutedHandler(handler), methods=[method]) for method, path, handler in table]

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
        await plane.close()
        serving.flush_log()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Starlette types every handler as taking Exception, though it passes each the class it is keyed by.
        exception_handlers={HTTPException: _http_error, Exception: _server_error},  # type: ignore[dict-item]
    )
    # The routes without parameters skip Starlette's router; the first listed wins, as there.
    direct: dict[tuple[str, str], Handler] = {}
    for method, path, handler in table:
        if "{" not in path:
            direct.setdefault((method, path), handler)
    serving = ServingApp(app, plane, direct)
    return serving
