"""SageMaker's container contract: GET /ping, POST /invocations in JSON, JSON Lines or CSV.

The body rules are those of SageMaker's own TensorFlow Serving container (its nginx handler,
aws/sagemaker-tensorflow-serving-container), so a client written against it gets the same
predictions here:

* `{"instances": ...}` or `{"inputs": ...}`: TF Serving's request, as it is.
* several JSON documents separated by whitespace (JSON Lines, whichever JSON content type):
  one instance each.
* any other single JSON value: a list of lists is the list of instances; anything else (a
  number, a string, an object, a one-dimensional list) is ONE instance, so `[1.0, 2.0, 5.0]`
  means `{"instances": [[1.0, 2.0, 5.0]]}`.
* CSV: one instance per row; a row with one column is a scalar instance, not a one-element list.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from starlette.responses import Response

from cloudml.serving.errors import InvalidInput, UnsupportedFormat
from cloudml.serving.http.codecs import parse_csv, parse_json_documents, render_rows
from cloudml.serving.http.contract import Contract, Route
from cloudml.serving.http.request import (
    CSV_TYPES,
    JSON_TYPES,
    JSONLINES_TYPES,
    HttpRequest,
)
from cloudml.serving.http.responses import json_response


def sagemaker_instances(payload: Any) -> list[Any]:
    """The instances of one JSON document that is not a TF Serving request."""
    if isinstance(payload, list):
        if not payload or isinstance(payload[0], list):
            return payload  # [] stays empty: refused as an empty batch, not as a shape
    return [payload]


class SageMaker(Contract):
    def routes(self) -> list[Route]:
        return [("GET", "/ping", self.health), ("POST", "/invocations", self.invocations)]

    async def invocations(self, request: HttpRequest) -> Response:
        request.require_json_answer()
        media = request.media_type
        if media in JSON_TYPES or media.endswith("+json") or media in JSONLINES_TYPES:
            what = "JSON Lines body" if media in JSONLINES_TYPES else "request body"
            documents = parse_json_documents(await self.read(request), what=what)
            if len(documents) > 1:
                instances = documents
            else:
                payload = documents[0]
                if isinstance(payload, dict) and ("instances" in payload or "inputs" in payload):
                    return await self.predict_payload(request, payload)
                instances = sagemaker_instances(payload)
        elif media in CSV_TYPES:
            header = "header=present" in request.headers.get("content-type", "").lower().replace(" ", "")
            instances = self._csv_instances(parse_csv(await self.read(request), header=header))
        else:
            raise UnsupportedFormat(f"unsupported Content-Type {media!r}; use application/json, application/jsonlines or text/csv")
        return json_response({"predictions": render_rows(await self.predict(request, instances))})

    def _csv_instances(self, rows: list[list[float]]) -> list[Any]:
        """CSV rows are flat: reshaped to the input's instance shape when that is fixed and has
        several dimensions; otherwise a one-column row is a scalar, as SageMaker reads it."""
        inputs = self.plane.signature.inputs
        if len(inputs) != 1:
            raise UnsupportedFormat("text/csv works only for models with one input; send JSON with an object per instance")
        spec = next(iter(inputs.values()))
        shape = spec.instance_shape
        if shape and len(shape) > 1 and all(d is not None for d in shape):
            fixed = cast("list[int]", shape)  # every dimension is known (checked above)
            size = int(np.prod(fixed))
            for number, row in enumerate(rows, start=1):
                if len(row) != size:
                    raise InvalidInput(f"CSV row {number} has {len(row)} values; expected {size} ({spec.describe()}, flattened)")
            return [np.asarray(row).reshape(fixed) for row in rows]
        return [row[0] if len(row) == 1 else row for row in rows]
