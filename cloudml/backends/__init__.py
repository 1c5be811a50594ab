"""Runtime backends: a loaded model that runs a batch of named arrays, whatever framework made it.

Below both packaging (which runs a converted model beside its original to verify it) and serving
(which serves one); neither of those is imported here. Each backend imports its framework lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from cloudml.contract import Manifest

Arrays = dict[str, np.ndarray]
# The cores one serving process may use, when several share the machine.
THREADS_VAR = "CLOUDML_BACKEND_THREADS"


class Backend(Protocol):
    name: str  # "tensorflow" or "onnx", as in the manifest
    version: str  # the runtime library's version
    # What the runtime raises when a value passes the signature's checks but the model refuses it
    # (an out-of-range token id, say): a client error, not a server one.
    rejects: tuple[type[BaseException], ...]

    def run(self, inputs: Arrays) -> Arrays:
        """Outputs by signature name for inputs by signature name (each with the batch first)."""
        ...


def load_backend(version_dir: Path, manifest: Manifest, *, threads: int | None = None) -> Backend:
    """The backend the manifest names, loaded from the package's version folder (not warmed up)."""
    if manifest.runtime.backend == "onnx":
        from cloudml.backends.onnx import OnnxBackend

        graph = manifest.runtime.onnx
        if graph is None:
            from cloudml.errors import ModelError

            raise ModelError(f"the manifest in {version_dir.parent} names the onnx backend but no ONNX graph", hint="package the model again")
        return OnnxBackend(version_dir / graph.file, inputs=graph.inputs, outputs=graph.outputs, threads=threads, index_ranges=graph.index_ranges)
    from cloudml.backends.tensorflow import TensorFlowBackend

    return TensorFlowBackend(version_dir, manifest.signature)


def available_cores() -> int:
    import os

    if (given := os.environ.get(THREADS_VAR, "").strip()).isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
