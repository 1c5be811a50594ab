"""The JSON, JSON Lines and CSV bodies the contracts share: bytes -> instances, outputs -> JSON.

A body that cannot be decoded is the caller's mistake: `InvalidInput`, saying what was wrong.
Response bodies follow TF Serving's REST formats, which Vertex AI and Azure ML clients read too.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from cloudml.serving.dataplane import Outputs
from cloudml.serving.errors import InvalidInput
from cloudml.serving.requests import jsonable


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def parse_jsonlines(body: bytes) -> list[Any]:
    instances = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            instances.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"line {number} of the JSON Lines body is not valid JSON: {exc}") from None
    return instances


def parse_csv(body: bytes) -> list[list[float]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("CSV body is not UTF-8 text") from None
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        try:
            rows.append([float(cell) for cell in row])
        except ValueError:
            raise InvalidInput(f"CSV row {number} holds a value that is not a number") from None
    return rows


def split_body(payload: Any, *, keys: tuple[str, ...] = ("instances",), columnar: bool = True) -> tuple[str, Any]:
    """("rows", instances) for `{"instances": [...]}` (or another listed key) or a bare JSON list;
    ("columns", inputs) for TF Serving's columnar `{"inputs": ...}` where the route allows it."""
    if isinstance(payload, list):
        return "rows", payload
    if isinstance(payload, dict):
        for key in keys:
            if key in payload:
                value = payload[key]
                if not isinstance(value, list):
                    raise InvalidInput(f'"{key}" must be a JSON list of instances, not {type(value).__name__}')
                return "rows", value
        if columnar and "inputs" in payload:
            return "columns", payload["inputs"]
    wanted = " or ".join([f'{{"{k}": [...]}}' for k in keys] + (['{"inputs": ...}'] if columnar else []))
    raise InvalidInput(f"request body must be {wanted} or a JSON list of instances")


def render_rows(outputs: Outputs) -> Any:
    """Row format (`"predictions"`): one entry per instance; with several outputs an object
    per instance, like TF Serving."""
    if len(outputs) == 1:
        return _jsonable_rows(next(iter(outputs.values())))
    size = len(next(iter(outputs.values())))
    return [{name: _row(values, i) for name, values in outputs.items()} for i in range(size)]


def render_columns(outputs: Outputs) -> Any:
    """Columnar format (`"outputs"`): the batch-first value, keyed by name when there are several."""
    if len(outputs) == 1:
        return jsonable(next(iter(outputs.values())))
    return {name: jsonable(values) for name, values in outputs.items()}


def _row(values: Any, index: int) -> Any:
    return jsonable(values[index]) if hasattr(values[index], "dtype") else values[index]


def _jsonable_rows(values: Any) -> Any:
    if isinstance(values, list):
        return [jsonable(v) for v in values]
    return jsonable(values)
