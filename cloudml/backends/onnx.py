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


class OutOfRange(ValueError):
    """An integer input holds a value outside the table it indexes (the manifest's index_ranges)."""


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, *, inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None, threads: int | None = None,
                 index_ranges: dict[str, tuple[int, int]] | None = None):
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
        # ONNX's Gather also takes ids the original framework refuses (a negative one counts from
        # the end): those are refused here, with one min/max per input that has a range.
        self._ranges = [(name, int(low), int(high)) for name, (low, high) in (index_ranges or {}).items()]
        self.rejects: tuple[type[BaseException], ...] = (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail,
                                                         OutOfRange)

    def run(self, inputs: Arrays) -> Arrays:
        for name, low, high in self._ranges:
            value = inputs.get(name)
            if value is not None and value.size and (value.min() < low or value.max() >= high):
                raise OutOfRange(_out_of_range(name, np.asarray(value), low, high))
        feeds = {self.inputs[name]: np.ascontiguousarray(value) for name, value in inputs.items()}
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._signature_names, results))


def _out_of_range(name: str, value: np.ndarray, low: int, high: int) -> str:
    at = tuple(int(i) for i in np.argwhere((value < low) | (value >= high))[0])
    return (f"input {name!r} holds {value[at]} at {list(at)}, outside [{low}, {high}): "
            f"the values the model's table of {high} rows takes")
