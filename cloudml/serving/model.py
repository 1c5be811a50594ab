"""A packaged model loaded once by the backend its manifest names, warmed up, and called with validated batches."""

from __future__ import annotations

import gc
import logging
import re
from pathlib import Path

from cloudml.backends import Arrays, Backend, load_backend
from cloudml.backends.tensorflow import probe_inputs
from cloudml.contract import Manifest
from cloudml.serving.errors import ModelRejected, NotReady

log = logging.getLogger("cloudml.serving")

_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\].*$")
_FUNCTION_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")


def describe_error(exc: BaseException) -> str:
    """One readable line for an exception, TensorFlow's and ONNX Runtime's included.

    A TF graph error opens with boilerplate ("Graph execution error:", "Detected at node ...",
    maybe a stack trace) and closes with node names; the line that says what was wrong
    ("indices[0,1] = 20000 is not in [0, 10000)") is the last one before the node line.
    """
    text = (getattr(exc, "message", None) or str(exc)).strip()
    # ONNX Runtime: "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while
    # running Gather node. Name:'...' Status Message: <what was wrong>".
    if "Status Message:" in text:
        return text.rsplit("Status Message:", 1)[1].strip().splitlines()[0] or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("[[")]
    line = lines[-1] if lines else type(exc).__name__
    line = _FUNCTION_PREFIX.sub("", _OP_SUFFIX.sub("", line))
    return line or type(exc).__name__


class ServedModel:
    def __init__(self, package_dir: Path):
        self.folder = Path(package_dir)
        self.manifest = Manifest.read(self.folder)
        self.signature = self.manifest.signature
        self.backend: Backend | None = None
        self.load_error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.manifest.model_name

    @property
    def version(self) -> int:
        return self.manifest.model_version

    @property
    def backend_name(self) -> str:
        return self.manifest.runtime.backend

    @property
    def ready(self) -> bool:
        return self.backend is not None

    def describe(self) -> dict[str, str]:
        runtime = self.manifest.runtime
        return {"model": self.name, "version": str(self.version), "backend": runtime.backend,
                "backend_version": self.backend.version if self.backend else "", "framework": runtime.framework}

    def load(self) -> None:
        """Load the model and run one warm-up call, so the first request is not the slow one."""
        try:
            backend = load_backend(self.folder / str(self.version), self.manifest)
            # Called raw: a warm-up failure is the model's fault, not a client's bad request.
            backend.run(probe_inputs(self.signature))
            if hasattr(backend, "use_fast_path"):
                backend.use_fast_path()
        except BaseException as exc:
            self.load_error = exc  # the server reports it after uvicorn gives up
            raise
        # A framework leaves hundreds of thousands of long-lived objects (TensorFlow does); a full
        # garbage collection scanning them all stalls every in-flight request for ~100 ms.
        # Freezing takes them out of the collector's view (they live as long as the server anyway).
        gc.collect()
        gc.freeze()
        self.backend = backend
        log.info("model %s version %s loaded and warmed up (served by %s %s)", self.name, self.version, backend.name, backend.version)

    def run(self, inputs: Arrays) -> Arrays:
        backend = self.backend
        if backend is None:
            raise NotReady("the model is still loading; retry shortly")
        try:
            return backend.run(inputs)
        except backend.rejects as exc:
            # Values the signature's types cannot rule out (an out-of-vocabulary token id, say).
            raise ModelRejected(f"the model rejected the input: {describe_error(exc)}") from None
