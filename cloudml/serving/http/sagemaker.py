"""SageMaker's container contract: GET /ping, POST /invocations in JSON, JSON Lines or CSV."""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.responses import Response

from cloudml.serving.errors import InvalidInput, UnsupportedFormat
from cloudml.serving.http.codecs import parse_csv, parse_jsonlines, render_rows
from cloudml.serving.http.contract import Contract, Route
from cloudml.serving.http.request import (
    CSV_TYPES,
    JSON_TYPES,
    JSONLINES_TYPES,
    HttpRequest,
)
from cloudml.serving.http.responses import json_response


class SageMaker(Contract):
    def routes(self) -> list[Route]:
        return [("GET", "/ping", self.health), ("POST", "/invocations", self.invocations)]

    async def invocations(self, request: HttpRequest) -> Response:
        request.require_json_answer()
        media = request.media_type
        if media in JSON_TYPES or media.endswith("+json"):
            return await self.predict_json(request)
        if media in JSONLINES_TYPES:
            instances = parse_jsonlines(await self.read(request))
        elif media in CSV_TYPES:
            instances = self._csv_instances(parse_csv(await self.read(request)))
        else:
            raise UnsupportedFormat(f"unsupported Content-Type {media!r}; use application/json, application/jsonlines or text/csv")
        return json_response({"predictions": render_rows(await self.predict(request, instances))})

    def _csv_instances(self, rows: list[list[float]]) -> list[Any]:
        """CSV rows are flat: reshaped to the input's instance shape when that is fixed."""
        inputs = self.plane.signature.inputs
        if len(inputs) != 1:
            raise UnsupportedFormat("text/csv works only for models with one input; send JSON with an object per instance")
        spec = next(iter(inputs.values()))
        shape = spec.instance_shape
        if shape and len(shape) > 1 and all(d is not None for d in shape):
            size = int(np.prod(shape))
            for number, row in enumerate(rows, start=1):
                if len(row) != size:
                    raise InvalidInput(f"CSV row {number} has {len(row)} values; expected {size} ({spec.describe()}, flattened)")
            return [np.asarray(row).reshape(shape) for row in rows]
        return rows
