"""The JSON, JSON Lines and CSV bodies the contracts share: bytes -> instances, outputs -> JSON.

A body that cannot be decoded is the caller's mistake: `InvalidInput`, saying what was wrong.
Response bodies follow TF Serving's REST formats, which Vertex AI and Azure ML clients read too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from cloudml.serving.dataplane import Outputs
from cloudml.serving.errors import InvalidInput
from cloudml.serving.requests import jsonable, jsonable_value


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def parse_json_documents(body: bytes, *, what: str = "request body") -> list[Any]:
    """One JSON document, or several separated by whitespace (JSON Lines, or documents side by
    side on a line, as SageMaker's container reads an `application/json` body). The common case,
    one document, costs one `orjson.loads`; the rest is only tried when that fails."""
    try:
        return [orjson.loads(body)]
    except orjson.JSONDecodeError as exc:
        whole = exc
    documents: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(orjson.loads(line))
            continue
        except orjson.JSONDecodeError as exc:
            error = exc
        try:
            documents.extend(_side_by_side(line))
        except ValueError:
            if not documents:  # nothing parsed before: it is one broken document, not lines
                raise InvalidInput(f"{what} is not valid JSON: {whole}") from None
            raise InvalidInput(f"line {number} of the {what} is not valid JSON: {error}") from None
    if not documents:
        raise InvalidInput(f"{what} is not valid JSON: {whole}")
    return documents


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # orjson refuses a number too large for a double, such as 1e400
        raise ValueError(f"number out of range: {text}")
    return value


# NaN and Infinity are not JSON, nor numbers past a double's range (Python's json reads them as inf)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _side_by_side(line: bytes) -> list[Any]:
    """Several JSON documents on one line, separated by whitespace; ValueError if it is not that."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    documents, index = [], 0
    while True:
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
        if index == len(text):
            break
        value, index = _DECODER.raw_decode(text, index)
        if index < len(text) and text[index] not in " \t\r\n":
            raise ValueError("documents must be separated by whitespace")
        documents.append(value)
    if len(documents) < 2:
        raise ValueError("not several documents")
    return documents


def parse_jsonlines(body: bytes) -> list[Any]:
    """One instance per line (blank lines skipped)."""
    return parse_json_documents(body, what="JSON Lines body")


def parse_csv(body: bytes, *, header: bool = False) -> list[list[int | float]]:
    """Rows of numbers. Each row is read as the JSON array `[row]`, which is what SageMaker's
    container sends on to TF Serving: values are numbers exactly as JSON writes them (no `nan`,
    `inf`, `1_0`, `+1` or `.5`, which JSON refuses too), and any line ending (LF, CRLF, CR)
    ends a row. `header`: the first row names the columns (`text/csv; header=present`)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("CSV body is not UTF-8 text") from None
    rows = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        if header:
            header = False
            continue
        try:
            row = orjson.loads(b"[" + line + b"]")
        except orjson.JSONDecodeError:
            row = None
        if row is None or not all(type(v) is float or type(v) is int for v in row):
            raise InvalidInput(f"CSV row {number} holds a value that is not a number "
                               "(write numbers as JSON does: 0.5, -3, 1e-05; not nan, inf, 1_0, +1, .5 or quoted)") from None
        rows.append(row)
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
    value = values[index]
    # An element of an object (string) array is plain bytes, with no dtype for jsonable to read.
    return jsonable(value) if hasattr(value, "dtype") else jsonable_value(value)


def _jsonable_rows(values: Any) -> Any:
    if isinstance(values, list):
        return [jsonable(v) for v in values]
    return jsonable(values)
