"""A user's .onnx file: checked, its signature read from the graph, and run once by ONNX Runtime,
so a file that cannot serve is refused when it is packaged rather than when it is deployed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloudml.contract import ONNX_FILE, OnnxGraph, Signature, TensorSpec
from cloudml.errors import ModelError
from cloudml.packaging.conversion.errors import NotConvertible, first_line

_HINT = "export the model again (torch.onnx.export, tf2onnx, ...) and check it with onnx.checker.check_model"


def inspect_onnx(path: Path, *, sample: list | None = None) -> tuple[Signature, OnnxGraph]:
    """The signature (first dimension the batch, dynamic dimensions None) and graph of `path`.

    Raises ModelError (exit 3) for a file that is not a complete, valid ONNX model, has inputs
    cloudml cannot serve, or that ONNX Runtime cannot load or run on probe inputs (or on `sample`,
    a predict request's "instances", which is then what it runs on)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
        external = any(uses_external_data(t) for t in model.graph.initializer)
        if not external:
            onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError ...
        raise ModelError(f"{path} is not a valid ONNX model: {type(exc).__name__}: {first_line(exc) or 'unreadable'}", hint=_HINT) from None
    if external:
        # The package holds one file; weights in files beside it would be left behind.
        raise ModelError(f"{path} keeps its weights in external data files; cloudml packages a single .onnx file",
                         hint="save it as one file: onnx.save(onnx.load(path), 'model.onnx', save_as_external_data=False) (under 2 GiB)")
    graph = model.graph
    initializers = {t.name for t in graph.initializer}  # IR < 4 lists weights among the inputs
    inputs = {v.name: _spec(v, path, "input") for v in graph.input if v.name not in initializers}
    outputs = {v.name: _spec(v, path, "output") for v in graph.output}
    if not inputs or not outputs:
        raise ModelError(f"{path} has no {'inputs' if not inputs else 'outputs'}", hint=_HINT)
    signature = Signature(inputs=inputs, outputs=outputs)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "unknown"
    onnx_graph = OnnxGraph(file=ONNX_FILE, opset=opset, producer=producer, inputs={n: n for n in inputs}, outputs={n: n for n in outputs})
    _check_runs(path, signature, sample)
    return signature, onnx_graph


def _spec(value, path: Path, what: str) -> TensorSpec:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelError(f"{path}: {what} {value.name!r} is a {kind or 'untyped value'}, not a tensor; cloudml serves tensors only", hint=_HINT)
    tensor = value.type.tensor_type
    if tensor.elem_type == onnx.TensorProto.STRING:
        dtype = "string"
    else:
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        except Exception:
            dtype = ""
        if dtype not in _SERVABLE:
            name = onnx.TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type in onnx.TensorProto.DataType.values() else str(tensor.elem_type)
            raise ModelError(f"{path}: {what} {value.name!r} is {name}, which a JSON request cannot carry",
                             hint="export the model with float32/int64/bool tensors")
    if not tensor.HasField("shape"):
        return TensorSpec(dtype=dtype, shape=None)
    return TensorSpec(dtype=dtype, shape=[d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim])


_SERVABLE = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}


def _check_runs(path: Path, signature: Signature, sample: list | None) -> None:
    from cloudml.backends.onnx import OnnxBackend
    from cloudml.packaging.conversion.probes import DYNAMIC_LENGTHS, probe_batches, sample_batches

    backend = OnnxBackend(path)  # a ModelError naming the file when ONNX Runtime cannot load it
    try:
        batches = sample_batches(signature, sample) if sample is not None else probe_batches(signature)
    except NotConvertible as exc:
        raise ModelError(f"{path}: {exc.reason}", hint="export the model with numeric inputs") from None
    guessed = any(d is None for spec in signature.inputs.values() for d in (spec.shape or [])[1:])
    for batch in batches:
        try:
            outputs = backend.run(batch)
        except Exception as exc:
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in batch.items())
            hint = (f"the probe took {' and '.join(map(str, DYNAMIC_LENGTHS))} for the model's dynamic dimensions; give a sample of inputs it takes"
                    if guessed and sample is None else _HINT)
            raise ModelError(f"ONNX Runtime could not run {path} on {'the sample' if sample is not None else 'probe inputs'} ({shapes}): "
                             f"{type(exc).__name__}: {first_line(exc)}", hint=hint) from None
        missing = [name for name in signature.outputs if name not in outputs]
        if missing:
            raise ModelError(f"ONNX Runtime returned no {', '.join(missing)} from {path}", hint=_HINT)
