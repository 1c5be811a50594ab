"""A packaged SavedModel loaded once, warmed up, and called with validated batches."""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cloudml.contract import SIGNATURE_NAME, Manifest
from cloudml.serving.errors import ModelRejected, NotReady

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
        # inputs -> outputs, once loaded: the flat call if it checks out
        self._call: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
        self._tf: Any = None  # the tensorflow module, once loaded (it ships no type information)
        self.load_error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.manifest.model_name

    @property
    def version(self) -> int:
        return self.manifest.model_version

    @property
    def ready(self) -> bool:
        return self._call is not None

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
        self._call = self._checked_flat_call(fn) or functools.partial(self._invoke, fn)
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

    def _checked_flat_call(self, fn):
        """A faster way to call the signature, or None.

        The public call binds the keyword arguments to the function's type on every call: ~0.1
        ms of Python holding the GIL, which the event loop is then denied. `_call_flat` skips that
        and served 2-5% more requests/s at 32 clients on two cores (seed CNN). It is private
        TensorFlow API, so it is used only when it exists, takes the inputs in an order the
        signature states, and returns what the public call returns on the warm-up inputs.
        """
        tf = self._tf
        call_flat, captured = getattr(fn, "_call_flat", None), getattr(fn, "captured_inputs", None)
        try:
            order = [spec.name for spec in tf.nest.flatten(fn.structured_input_signature)]
            if call_flat is None or captured is None or sorted(order) != sorted(self.signature.inputs):
                return None

            def flat_call(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                outputs = call_flat([tf.constant(inputs[name]) for name in order], captured)
                return {k: v.numpy() for k, v in outputs.items()}

            # Distinct values per float input, so inputs fed in the wrong order would show.
            inputs = {name: (array + 0.25 * (i + 1) if array.dtype.kind == "f" else array)
                      for i, (name, array) in enumerate(sorted(self._warm_up_inputs().items()))}
            expected, got = self._invoke(fn, inputs), flat_call(inputs)
            if expected.keys() != got.keys() or not all(np.array_equal(expected[k], got[k]) for k in expected):
                return None
        except Exception as exc:  # any drift in the private API: keep the public call
            log.debug("using the public signature call: %s", exc)
            return None
        return flat_call

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._call is None:
            raise NotReady("the model is still loading; retry shortly")
        try:
            return self._call(inputs)
        except self._tf.errors.InvalidArgumentError as exc:
            # Values the signature's types cannot rule out (an out-of-vocabulary token id, say).
            raise ModelRejected(f"the model rejected the input: {describe_error(exc)}") from None
