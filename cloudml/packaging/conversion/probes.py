"""Inputs to run a model and its conversion on: deterministic probes built from the signature,
and the user's sample (the JSON "instances" of a predict request) as batches of the same kind."""

from __future__ import annotations

from typing import Any

import numpy as np

from cloudml.contract import Signature, TensorSpec
from cloudml.errors import ModelError
from cloudml.packaging.conversion.errors import NotConvertible

Arrays = dict[str, np.ndarray]

# Unknown non-batch dimensions (a sequence's length) take a different value in different probes,
# so a conversion that fixed a length while tracing shows up as a failed call or a difference.
DYNAMIC_LENGTHS = (3, 11)
_BATCH_SIZES = (1, 4)
_SAMPLE_HINT = ('give a sample file like a predict request\'s body, {"instances": [...]}, whose instances match the model\'s inputs '
                "(`cloudml package` shows them)")


def probe_batches(signature: Signature, *, sample: list | None = None, seed: int = 0) -> list[Arrays]:
    """Probe batches for `signature`, then the user's sample (when given) as one batch per instance shape.

    Three probes: batch 1 and 4 (or the model's fixed batch), unknown dimensions at 3 and 11, floats
    from N(0, 1) and, in the third, from [0, 1) (pixels, probabilities: where models are trained);
    integers 0 or 1 (a valid row of any embedding table), booleans at random. A string input or one
    of unknown rank raises NotConvertible: ONNX serving of those is not supported. A sample that
    does not match the signature raises ModelError naming the instance and input."""
    for name, spec in signature.inputs.items():
        if spec.dtype == "string":
            raise NotConvertible(f"input {name!r} is a string tensor; cloudml serves string inputs with TensorFlow only")
        if spec.shape is None:
            raise NotConvertible(f"input {name!r} has no fixed rank, so no probe inputs can be built for it")
        if not spec.shape:
            raise NotConvertible(f"input {name!r} is a scalar, with no batch dimension")
    rng = np.random.default_rng(seed)
    fixed = next((spec.shape[0] for spec in signature.inputs.values() if spec.shape and spec.shape[0] is not None), None)
    plans = [(_BATCH_SIZES[0], DYNAMIC_LENGTHS[0], "normal"), (_BATCH_SIZES[1], DYNAMIC_LENGTHS[1], "normal"), (_BATCH_SIZES[1], DYNAMIC_LENGTHS[0], "unit")]
    batches = [{name: _probe(spec, fixed or batch, length, floats, rng) for name, spec in signature.inputs.items()} for batch, length, floats in plans]
    if sample is not None:
        batches.extend(sample_batches(signature, sample))
    return batches


def _probe(spec: TensorSpec, batch: int, length: int, floats: str, rng: np.random.Generator) -> np.ndarray:
    shape = [batch] + [length if d is None else d for d in (spec.shape or [])[1:]]
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind in "fc":
        values = rng.standard_normal(shape) if floats == "normal" else rng.random(shape)
        return values.astype(dtype)
    raise NotConvertible(f"no probe inputs can be built for dtype {spec.dtype}")


def sample_batches(signature: Signature, sample: list) -> list[Arrays]:
    """The sample's instances as batches (grouped by shape, as a server groups variable-length ones)."""
    if not isinstance(sample, list) or not sample:
        raise ModelError("the sample has no instances", hint=_SAMPLE_HINT)
    names = list(signature.inputs)
    rows: list[Arrays] = []
    for index, instance in enumerate(sample):
        if isinstance(instance, dict):
            unknown, missing = sorted(set(instance) - set(names)), [n for n in names if n not in instance]
            if unknown or missing:
                said = f"unknown input(s) {', '.join(map(repr, unknown))}" if unknown else f"no value for input(s) {', '.join(map(repr, missing))}"
                raise ModelError(f"the sample's instance {index} has {said}; the model's inputs are {', '.join(map(repr, names))}", hint=_SAMPLE_HINT)
            values = instance
        elif len(names) == 1:
            values = {names[0]: instance}
        else:
            raise ModelError(f"the sample's instance {index} is not an object keyed by input name, and the model has several inputs "
                             f"({', '.join(map(repr, names))})", hint=_SAMPLE_HINT)
        rows.append({n: _sample_array(values[n], signature.inputs[n], f"the sample's instance {index}, input {n!r}") for n in names})
    groups: dict[tuple, list[Arrays]] = {}
    for row in rows:
        groups.setdefault(tuple(row[n].shape for n in names), []).append(row)
    return [{n: np.stack([row[n] for row in group]) for n in names} for group in groups.values()]


def _sample_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError:
        array = None
    if array is None or array.dtype.kind == "O":
        raise ModelError(f"{where}: the values are ragged or mixed; expected {spec.describe()}", hint=_SAMPLE_HINT)
    expected = spec.instance_shape
    if expected is not None and (array.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, array.shape))):
        got = "[" + ", ".join(map(str, array.shape)) + "]"
        raise ModelError(f"{where} has shape {got}; the model expects {spec.describe()}", hint=_SAMPLE_HINT)
    target = np.dtype(object) if spec.dtype == "string" else np.dtype(spec.dtype)
    if target.kind == "O":
        if array.dtype.kind not in "US":
            raise ModelError(f"{where}: expected strings, got {array.dtype.name} values", hint=_SAMPLE_HINT)
        return array.astype(object)
    if array.dtype.kind in "US":
        raise ModelError(f"{where}: expected {spec.dtype} numbers, got strings", hint=_SAMPLE_HINT)
    if target.kind in "iub" and array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ModelError(f"{where}: expected {spec.dtype} values, got fractional numbers", hint=_SAMPLE_HINT)
    return array.astype(target)
