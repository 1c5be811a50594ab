"""Decoded instances -> validated numpy batches, and output arrays -> JSON-able values.

Everything a client can get wrong about the model's inputs is caught here, before the model
runs, and raised as `InvalidInput` with a message that says what was expected. No TensorFlow
and no HTTP in this module: the protocol adapters decode bodies into instances first.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloudml.contract import Signature, TensorSpec
from cloudml.serving.errors import InvalidInput

# The name the preflight probe (and code written before cloudml.serving.errors) catches.
BadRequest = InvalidInput


_FLOAT_KINDS = "fiu"
_INT_KINDS = "iu"
_MAX_DIMS = 64  # numpy's limit on an array's dimensions (NPY_MAXDIMS)


@dataclass(frozen=True)
class Batch:
    """Instances grouped so each group stacks into one array per input."""

    groups: list[tuple[list[int], dict[str, np.ndarray]]]  # (instance indices, input arrays)
    size: int


def signature_summary(signature: Signature) -> dict[str, str]:
    return {name: spec.describe() for name, spec in signature.inputs.items()}


def _strings(array: np.ndarray, value: Any) -> np.ndarray:
    """An object array of `value`'s own str (kind U) or bytes (kind S) leaves: numpy's fixed-width
    dtypes drop trailing NUL characters, so `array`'s elements are used only for leaves it had to
    convert (numbers, or bytes among str)."""
    scalar = str if array.dtype.kind == "U" else bytes
    leaves: list[Any] = []

    def walk(v: Any, depth: int) -> None:
        if depth == array.ndim:
            leaves.append(v)
        else:
            for item in v:
                walk(item, depth + 1)

    walk(value, 0)
    out = np.empty(array.shape, dtype=object)
    out.reshape(-1)[:] = [v if type(v) is scalar else c for v, c in zip(leaves, array.reshape(-1).tolist())]
    return out


def _check_dtype(array: np.ndarray, spec: TensorSpec, where: str, value: Any = None) -> np.ndarray:
    """`value`: what `array` was made from, when it holds the original strings (see `_strings`)."""
    dtype = spec.dtype
    kind = array.dtype.kind
    if dtype == "string":
        if kind in "US" and value is not None:
            return _strings(array, value)
        if kind in "USO":
            return array.astype(object)
        raise InvalidInput(f"{where}: expected strings ({spec.describe()}), got {array.dtype.name} values")
    if kind == "O":
        raise InvalidInput(f"{where}: values are ragged or mixed; expected {spec.describe()}")
    if kind in "US":
        raise InvalidInput(f"{where}: expected numbers ({spec.describe()}), got strings")
    if dtype == "bool":
        if kind != "b":
            raise InvalidInput(f"{where}: expected booleans ({spec.describe()}), got {array.dtype.name} values")
        return array
    target = np.dtype(dtype)
    if target.kind in _INT_KINDS:
        if kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise InvalidInput(f"{where}: expected integers ({spec.describe()}), got non-integer numbers")
        elif kind not in _INT_KINDS and kind != "b":
            raise InvalidInput(f"{where}: expected integers ({spec.describe()}), got {array.dtype.name} values")
        info = np.iinfo(target)
        # Float values (numpy makes floats of JSON ints past int64) are compared with the exclusive
        # bound info.max + 1, a power of two and exact as a float: info.max itself rounds up to it
        # (2**63 for int64), which would let 2**63 through to wrap around in the cast.
        if array.size:
            too_big = array.max() >= float(info.max + 1) if kind == "f" else array.max() > info.max
            if array.min() < info.min or too_big:
                raise InvalidInput(f"{where}: values do not fit in {dtype}")
        return array.astype(target)
    if kind not in _FLOAT_KINDS and kind != "b":
        raise InvalidInput(f"{where}: expected numbers ({spec.describe()}), got {array.dtype.name} values")
    return array.astype(target)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def _decode_b64(value: Any) -> Any:
    """TF Serving's `{"b64": "..."}` convention for bytes, applied recursively."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise InvalidInput('a {"b64": ...} value is not valid base64') from None
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _check_shape(shape: tuple[int, ...], spec: TensorSpec, where: str, *, batched: bool) -> None:
    expected = spec.shape if batched else spec.instance_shape
    if expected is None:
        return
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
        got = "[" + ", ".join(map(str, shape)) + "]"
        want = "[" + ", ".join("?" if d is None else str(d) for d in expected) + "]"
        raise InvalidInput(f"{where}: shape {got} does not match the expected {want} ({spec.describe()})")


def _to_array(value: Any, spec: TensorSpec, where: str, *, batched: bool) -> np.ndarray:
    if spec.dtype == "string":
        value = _decode_b64(value)
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidInput(f"{where}: values are ragged (nested lists of different lengths); expected {spec.describe()}") from None
    if not batched and array.ndim >= _MAX_DIMS:
        # A batch of these would need one more dimension than numpy (and TensorFlow's C API) has.
        raise InvalidInput(f"{where}: {array.ndim} dimensions; an instance may have at most {_MAX_DIMS - 1} ({spec.describe()})")
    array = _check_dtype(array, spec, where, value)
    _check_shape(array.shape, spec, where, batched=batched)
    return array


def batch_from_instances(instances: list[Any], signature: Signature) -> Batch:
    """Row format: one entry per instance; a dict per instance when the model has several inputs."""
    if not instances:
        raise InvalidInput("empty batch: send at least one instance", expected=signature_summary(signature))
    inputs = signature.inputs
    names = list(inputs)
    single = names[0] if len(names) == 1 else None
    # TF Serving's row format: a bare {"b64": "..."} instance of a one-input string model is that
    # input's value, unless the model's input is itself named "b64".
    bare_b64 = single is not None and single != "b64" and inputs[single].dtype == "string"
    if single is not None and not isinstance(instances[0], dict):
        # Fast path: every instance has the same shape, so the whole batch converts at once.
        try:
            array = np.asarray(instances)
        except ValueError:
            array = None
        if array is not None and array.dtype.kind != "O":
            array = _check_dtype(array, inputs[single], "instances", instances)
            _check_shape(array.shape, inputs[single], "instances", batched=True)
            return Batch(groups=[(list(range(len(instances))), {single: array})], size=len(instances))
    rows: list[dict[str, np.ndarray]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) and not (bare_b64 and _is_b64(instance)):
            unknown = sorted(set(instance) - set(names))
            if unknown:
                raise InvalidInput(
                    f"instance {index}: unknown input name(s) {', '.join(map(repr, unknown))}; the model's inputs are {', '.join(map(repr, names))}"
                    ' (several instances go in {"instances": [...]})',
                    expected=signature_summary(signature),
                )
            missing = [n for n in names if n not in instance]
            if missing:
                raise InvalidInput(f"instance {index}: missing input(s) {', '.join(map(repr, missing))}", expected=signature_summary(signature))
            values = instance
        elif single is not None:
            values = {single: instance}
        else:
            raise InvalidInput(
                f"instance {index}: the model has several inputs, so each instance must be an object keyed by input name",
                expected=signature_summary(signature),
            )
        rows.append({n: _to_array(values[n], inputs[n], f"instance {index}, input {n!r}", batched=False) for n in names})
    # Variable-length instances (sequences) cannot share one array: group them by shape.
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(tuple(row[n].shape for n in names), []).append(index)
    return Batch(
        groups=[(idx, {n: np.stack([rows[i][n] for i in idx]) for n in names}) for idx in groups.values()],
        size=len(rows),
    )


def batch_from_columns(columns: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Columnar format: `{"inputs": value}` for one input, `{"inputs": {name: value}}` for several."""
    names = list(signature.inputs)
    # One input may be given bare; a dict is taken as keyed by input name unless it is a b64 value.
    if len(names) == 1 and not (isinstance(columns, dict) and set(columns) != {"b64"}):
        columns = {names[0]: columns}
    if not isinstance(columns, dict):
        raise InvalidInput('"inputs" must be an object keyed by input name for a model with several inputs', expected=signature_summary(signature))
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise InvalidInput(f"unknown input name(s) {', '.join(map(repr, unknown))}; the model's inputs are {', '.join(map(repr, names))}",
                           expected=signature_summary(signature))
    missing = [n for n in names if n not in columns]
    if missing:
        raise InvalidInput(f"missing input(s) {', '.join(map(repr, missing))}", expected=signature_summary(signature))
    arrays = {n: _to_array(columns[n], signature.inputs[n], f"input {n!r}", batched=True) for n in names}
    sizes = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
    if sizes == {0} or 0 in sizes:
        raise InvalidInput("empty batch: send at least one instance", expected=signature_summary(signature))
    if len(sizes) > 1:
        raise InvalidInput("inputs have different batch sizes")
    return arrays


def jsonable(array: np.ndarray) -> Any:
    """Numeric arrays go to orjson as they are; string tensors become text (or b64 when not UTF-8)."""
    if array.dtype.kind in "OS":
        return np.vectorize(jsonable_value, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array


def jsonable_value(value: Any) -> Any:
    """One element of a string tensor: bytes become text, or `{"b64": ...}` when not UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return value
