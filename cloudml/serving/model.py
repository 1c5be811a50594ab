"""A packaged SavedModel loaded once, warmed up, and called with validated batches."""

from __future__ import annotations

import gc
import logging
import os
import re
from pathlib import Path

import numpy as np

from cloudml.packaging.manifest import SIGNATURE_NAME, Manifest
from cloudml.serving.requests import BadRequest

log = logging.getLogger("cloudml.serving")

_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\].*$")
_FUNCTION_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")


def describe_error(exc: BaseException) -> str:
    """One readable line for an exception, TensorFlow's included.

    A TF graph error opens with boilerplate ("Graph execution error:", "Detected at node ...",
    maybe a stack trace) and closes with node names; the line that says what was wrong
    ("indices[0,1] = 20000 is not in [0, 10000)") is the last one before the node line.
    """
    text = (getattr(exc, "message", None) or str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("[[")]
    line = lines[-1] if lines else type(exc).__name__
    line = _FUNCTION_PREFIX.sub("", _OP_SUFFIX.sub("", line))
    return line or type(exc).__name__


class ServedModel:
    def __init__(self, package_dir: Path):
        self.folder = Path(package_dir)
        self.manifest = Manifest.read(self.folder)
        self.signature = self.manifest.signature
        self._fn = None
        self._tf = None
        self.load_error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.manifest.model_name

    @property
    def version(self) -> int:
        return self.manifest.model_version

    @property
    def ready(self) -> bool:
        return self._fn is not None

    def load(self) -> None:
        """Load the SavedModel and run one warm-up call, so the first request is not the slow one."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(self.folder / str(self.version)))
            fn = loaded.signatures[SIGNATURE_NAME]
            # Called raw: a warm-up failure is the model's fault, not a client's bad request.
            self._invoke(fn, self._warm_up_inputs())
        except BaseException as exc:
            self.load_error = exc  # the server reports it after uvicorn gives up
            raise
        self._loaded = loaded  # keep the object alive: the signature's variables belong to it
        self._fn = fn
        # TensorFlow leaves hundreds of thousands of long-lived objects; a full garbage collection
        # scanning them all stalls every in-flight request for ~100 ms. Freezing takes them out
        # of the collector's view (they live as long as the server anyway).
        gc.collect()
        gc.freeze()
        log.info("model %s version %s loaded and warmed up", self.name, self.version)

    def _warm_up_inputs(self) -> dict[str, np.ndarray]:
        inputs = {}
        for name, spec in self.signature.inputs.items():
            shape = [1] + [d or 1 for d in (spec.instance_shape or [])]
            if spec.dtype == "string":
                inputs[name] = np.full(shape, b"", dtype=object)
            else:
                inputs[name] = np.zeros(shape, dtype=spec.dtype)
        return inputs

    def _invoke(self, fn, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._fn is None:
            raise RuntimeError("model is not loaded")
        try:
            return self._invoke(self._fn, inputs)
        except self._tf.errors.InvalidArgumentError as exc:
            # Values the signature's types cannot rule out (an out-of-vocabulary token id, say).
            raise BadRequest(f"the model rejected the input: {describe_error(exc)}") from None
