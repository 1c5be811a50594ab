"""What every contract adapter shares: the data plane, the body limit, and the JSON predict path."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from cloudml.serving.dataplane import DataPlane, Outputs, PredictRequest
from cloudml.serving.http.codecs import (
    parse_json,
    render_columns,
    render_rows,
    split_body,
)
from cloudml.serving.http.request import HttpRequest
from cloudml.serving.http.responses import json_response
from cloudml.serving.memory import TRIM_AFTER_BYTES
from cloudml.serving.requests import signature_summary

Handler = Callable[[HttpRequest], Awaitable[Response]]
Route = tuple[str, str, Handler]  # (method, path, handler); a path may hold {name} parameters


class Contract:
    """One cloud's routes over the data plane. Subclasses list them in `routes()`."""

    def __init__(self, plane: DataPlane, *, max_body_bytes: int):
        self.plane = plane
        self.max_body_bytes = max_body_bytes
        self.expected = signature_summary(plane.signature)

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def read(self, request: HttpRequest) -> bytes:
        body = await request.body(self.max_body_bytes, expected=self.expected)
        if len(body) >= TRIM_AFTER_BYTES:
            self.plane.memory.after_big_request()
        return body

    async def predict(self, request: HttpRequest, inputs: Any, *, columnar: bool = False) -> Outputs:
        return await self.plane.predict(PredictRequest(inputs, columnar, request.received, request.gone))

    async def predict_json(self, request: HttpRequest, *, keys: tuple[str, ...] = ("instances",), columnar: bool = True) -> Response:
        request.require_json()
        return await self.predict_payload(request, parse_json(await self.read(request)), keys=keys, columnar=columnar)

    async def predict_payload(self, request: HttpRequest, payload: Any, *, keys: tuple[str, ...] = ("instances",), columnar: bool = True) -> Response:
        """`{"instances": [...]}` (or another of `keys`), a bare list or, where `columnar`,
        `{"inputs": ...}`; answered `{"predictions": [...]}` or `{"outputs": ...}`."""
        kind, value = split_body(payload, keys=keys, columnar=columnar)
        columns = kind == "columns"
        outputs = await self.plane.predict(PredictRequest(value, columns, request.received, request.gone))
        return json_response({"outputs": render_columns(outputs)} if columns else {"predictions": render_rows(outputs)})

    async def health(self, request: HttpRequest) -> Response:
        model = self.plane.model
        if self.plane.ready:
            return json_response({"status": "ready", "model": model.name, "version": model.version, "pid": os.getpid()})
        return json_response({"status": "loading"}, status=503)
