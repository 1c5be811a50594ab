"""ONNX Runtime: an .onnx file run on the CPU with session options chosen for a serving process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloudml.backends import Arrays, available_cores
from cloudml.errors import ModelError


def _session_options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One batch at a time (the batcher forms them): all cores inside an operator, none across them.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores the event loop needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, *, inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.version = ort.__version__
        try:
            self.session = ort.InferenceSession(str(path), sess_options=_session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelError(f"ONNX Runtime could not load {path}: {exc}", hint="check the file is a complete ONNX model (onnx.checker.check_model)") from None
        graph_inputs = [i.name for i in self.session.get_inputs()]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = inputs or {name: name for name in graph_inputs}  # signature name -> graph name
        self.outputs = outputs or {name: name for name in graph_outputs}
        self._output_names = list(self.outputs.values())
        self._signature_names = list(self.outputs)
        self.rejects: tuple[type[BaseException], ...] = (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail)

    def run(self, inputs: Arrays) -> Arrays:
        feeds = {self.inputs[name]: np.ascontiguousarray(value) for name, value in inputs.items()}
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._signature_names, results))
