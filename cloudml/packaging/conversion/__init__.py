"""Which runtime serves a model: ONNX Runtime when the model converts and the conversion verifies
against the original on probe inputs, the original framework otherwise (with the reason).

    choose_tensorflow_runtime   a SavedModel: tf2onnx, verified against TensorFlow
    onnxfile.inspect_onnx       a user's .onnx file: checked, its signature read, run once
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from cloudml.contract import ONNX_FILE, Runtime, Signature, Tolerance
from cloudml.errors import ModelError
from cloudml.packaging.conversion.errors import NotConvertible
from cloudml.packaging.conversion.verify import DEFAULT_TOLERANCE, Comparison

__all__ = ["DEFAULT_TOLERANCE", "NotConvertible", "choose_tensorflow_runtime", "onnx_refused"]

log = logging.getLogger("cloudml.packaging")
ORIGINAL_SAVED_MODEL = "saved_model.pb"


def onnx_refused(reason: str, *, details: str | None = None) -> ModelError:
    """The error for `--runtime onnx` when the model has no verified ONNX form."""
    return ModelError(f"the model cannot be served by ONNX Runtime: {reason}", details=details,
                      hint="package it with `--runtime tensorflow`, or `--runtime auto` (the default) to serve it with TensorFlow when it does not convert")


def choose_tensorflow_runtime(version_dir: Path, signature: Signature, *, requested: Literal["auto", "onnx", "tensorflow"],
                              tensorflow_version: str | None, sample: list | None = None, tolerance: Tolerance = DEFAULT_TOLERANCE) -> Runtime:
    """The runtime for the SavedModel in `version_dir`; writes `version_dir/model.onnx` when it is ONNX Runtime.

    "tensorflow": TensorFlow, nothing converted. Otherwise the model is converted and both run on
    the probes (and `sample`, a predict request's "instances"): ONNX Runtime when every output
    agrees within `tolerance`, else TensorFlow with the reason, or for "onnx" a ModelError. A
    sample that does not match the signature is a ModelError whatever was requested."""
    tensorflow = Runtime(backend="tensorflow", framework="tensorflow", framework_version=tensorflow_version, requested=requested,
                         original=ORIGINAL_SAVED_MODEL)
    if requested == "tensorflow":
        return tensorflow
    out = version_dir / ONNX_FILE
    try:
        graph, comparison = _convert_and_verify(version_dir, signature, out, sample=sample, tolerance=tolerance)
    except NotConvertible as exc:
        out.unlink(missing_ok=True)
        if requested == "onnx":
            raise onnx_refused(exc.reason, details=exc.details) from None
        log.info("serving with TensorFlow: %s", exc.reason)
        return tensorflow.model_copy(update={"fallback_reason": exc.reason})
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    verification = comparison.verification()
    if not comparison.passed:
        out.unlink(missing_ok=True)
        reason = comparison.reason or "the conversion did not verify"
        if requested == "onnx":
            raise onnx_refused(reason)
        log.info("serving with TensorFlow: %s", reason)
        return tensorflow.model_copy(update={"fallback_reason": reason, "tolerance": tolerance, "verification": verification})
    return tensorflow.model_copy(update={"backend": "onnx", "onnx": graph, "tolerance": tolerance, "verification": verification})


def _convert_and_verify(version_dir: Path, signature: Signature, out: Path, *, sample: list | None, tolerance: Tolerance):
    from cloudml.backends.onnx import OnnxBackend
    from cloudml.backends.tensorflow import TensorFlowBackend
    from cloudml.packaging.conversion.probes import probe_batches
    from cloudml.packaging.conversion.tensorflow import convert_saved_model
    from cloudml.packaging.conversion.verify import compare

    batches = probe_batches(signature, sample=sample)  # a bad sample fails here, before any conversion
    graph = convert_saved_model(version_dir, signature, out)
    try:
        candidate = OnnxBackend(out, inputs=graph.inputs, outputs=graph.outputs, index_ranges=graph.index_ranges)
    except ModelError as exc:
        raise NotConvertible(f"ONNX Runtime cannot load the converted model: {exc.message.splitlines()[0][:300]}") from None
    try:
        reference = TensorFlowBackend(version_dir, signature)
    except Exception as exc:  # TensorFlow's own load errors: serving reports them as it always has
        raise NotConvertible(f"TensorFlow could not load the SavedModel to verify the conversion: {type(exc).__name__}") from None
    comparison: Comparison = compare(reference.run, candidate.run, batches, tolerance, used_sample=sample is not None)
    return graph, comparison
