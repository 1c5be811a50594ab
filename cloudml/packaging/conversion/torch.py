"""PyTorch models to ONNX: a torch.export program (.pt2) or a TorchScript file (.pt), exported to
`model.onnx` in the version folder and verified against torch's own outputs on probe batches.

PyTorch models are served by ONNX Runtime only, so a model that does not export, or whose ONNX
graph disagrees with torch, is refused here with the reason. torch is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cloudml.contract import ONNX_FILE, OnnxGraph, Signature, TensorSpec, Tolerance, Verification
from cloudml.errors import ModelError, ProviderUnavailable
from cloudml.packaging.conversion.ranges import index_ranges

TORCH_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
_BATCHES = (1, 4)
_LENGTHS = (3, 8)  # the two lengths probed for each dynamic dimension other than the batch
_SAVE_HINT = ("save the model with torch.export.save(torch.export.export(model, args, dynamic_shapes=...), 'model.pt2') "
              "or torch.jit.script(model).save('model.pt')")


@dataclass(frozen=True)
class TorchExport:
    """What exporting a PyTorch model to ONNX gave, for the manifest."""

    signature: Signature
    onnx: OnnxGraph
    verification: Verification
    tolerance: Tolerance
    torch_version: str
    seconds: float  # loading, exporting and verifying


@dataclass(frozen=True)
class _Input:
    name: str
    dtype: str  # numpy name
    dims: tuple[Any, ...]  # an int, or a sympy expression over the program's symbols


def export_torch(model_file: Path, source_format: Literal["pt2", "torchscript"], version_dir: Path, *,
                 sample: list | None = None, what: Path | None = None, tolerance: Tolerance = TORCH_TOLERANCE) -> TorchExport:
    """Export `model_file` to `version_dir/model.onnx` and verify it; on any failure raise ModelError
    (naming `what`, the user's file) and leave nothing in `version_dir`.

    `sample` is the "instances" list of a request: each instance an array-like for a model with one
    input, or a dict of input name -> array-like. A TorchScript file records no input shapes, so it
    needs one; for a .pt2 it is one more probe batch.
    """
    what = what or model_file
    started = time.perf_counter()
    before = set(version_dir.iterdir()) if version_dir.exists() else None
    version_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_torch():
            torch = _import_torch(what)
            torch_version = torch.__version__.split("+")[0]
            target = version_dir / ONNX_FILE
            if source_format == "pt2":
                signature, probes, used_sample = _export_program(model_file, target, sample=sample, what=what)
            elif source_format == "torchscript":
                signature, probes, used_sample = _export_script(model_file, target, sample=sample, what=what)
            else:
                raise ModelError(f"{what} is a {source_format} model, not a PyTorch one")
            graph, outputs = _onnx_graph(target, list(signature.inputs), torch_version)
            signature = Signature(inputs=signature.inputs, outputs=outputs)
            verification = _verify(target, graph, probes, tolerance, used_sample=used_sample, what=what)
        if not verification.passed:
            raise ModelError(
                f"the ONNX export of {what} does not match torch: output '{verification.worst_output}' differs by up to "
                f"{verification.max_abs_diff:.3g} (relative {verification.max_rel_diff:.3g}), more than the tolerance "
                f"(atol {tolerance.atol}, rtol {tolerance.rtol})",
                hint="an operator behaves differently in ONNX Runtime (a random one, or one whose numerics differ); export the model to ONNX yourself "
                "(torch.onnx.export(model, args, dynamo=True)), check it, and package the .onnx file",
            )
    except BaseException:
        _remove_new(version_dir, before)
        raise
    return TorchExport(signature, graph, verification, tolerance, torch_version, time.perf_counter() - started)


def _import_torch(what: Path):
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
        import torch
    except ImportError as exc:
        raise ProviderUnavailable(
            f"packaging the PyTorch model {what} needs {exc.name or 'torch'}, which is not installed",
            hint="install torch, onnx and onnxscript; for torch without CUDA: pip install torch --index-url https://download.pytorch.org/whl/cpu",
        ) from None
    return torch


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch.export and torch.onnx log warnings (torchvision missing, deprecations) that are not the user's concern."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch.onnx", "torch._export", "torch.fx.experimental.symbolic_shapes")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _remove_new(version_dir: Path, before: set[Path] | None) -> None:
    if before is None:
        import shutil

        shutil.rmtree(version_dir, ignore_errors=True)
        return
    for path in set(version_dir.iterdir()) - before:
        if path.is_dir():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _archive_kind(model_file: Path, what: Path) -> str:
    """"pt2", "torchscript" or "pickle" (torch.save), from the zip's entries: nothing is unpickled."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{what} is not a PyTorch archive: {exc}", hint=_SAVE_HINT) from None
    entries = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "archive_format" in entries:
        return "pt2"
    if "constants.pkl" in entries or any(entry.startswith("code/") for entry in entries):
        return "torchscript"
    if "data.pkl" in entries:
        return "pickle"
    raise ModelError(f"{what} is a zip archive but not one PyTorch wrote", hint=_SAVE_HINT)


def _weights_only_error(what: Path) -> ModelError:
    return ModelError(
        f"{what} was written by torch.save (a state_dict of weights, or a pickled module), not as a program cloudml can run: "
        "cloudml needs the model itself, not only its weights, and runs no pickled code",
        hint="where the model is built, load its weights and save the program: torch.export.save(torch.export.export(model, "
        "(example,), dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2'), or torch.jit.script(model).save('model.pt')",
    )


def _check_kind(model_file: Path, expected: str, what: Path) -> None:
    kind = _archive_kind(model_file, what)
    if kind == "pickle":
        raise _weights_only_error(what)
    if kind != expected:
        written = {"pt2": "torch.export.save (a .pt2 program)", "torchscript": "TorchScript (torch.jit.save)"}[kind]
        suffix = {"pt2": ".pt2", "torchscript": ".pt"}[kind]
        raise ModelError(f"{what} was written by {written}, which its file name does not say", hint=f"rename it to end in {suffix}")


# --- torch.export programs ---------------------------------------------------------------------


def _export_program(model_file: Path, target: Path, *, sample: list | None, what: Path):
    import torch
    from torch.export.graph_signature import InputKind, TensorArgument

    _check_kind(model_file, "pt2", what)
    try:
        # A file handle: torch.export.load refuses a path that does not end in .pt2 (cloudml's copy may not).
        with model_file.open("rb") as handle:
            program = torch.export.load(handle)
    except Exception as exc:
        raise ModelError(f"torch.export.load could not read {what}: {_first_line(exc)}", hint=_SAVE_HINT) from None
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    inputs: list[_Input] = []
    for spec in program.graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue  # parameters, buffers, constants
        if not isinstance(spec.arg, TensorArgument):
            raise ModelError(f"{what} takes a non-tensor input ({spec.arg}); cloudml serves programs whose inputs are all tensors",
                             hint="export a wrapper module whose forward takes only tensors")
        value = placeholders[spec.arg.name].meta["val"]
        dims = tuple(int(d) if isinstance(d, int) else d.node.expr for d in value.shape)
        inputs.append(_Input(spec.arg.name, _numpy_dtype(value.dtype, spec.arg.name, what), dims))
    if not inputs:
        raise ModelError(f"{what} takes no inputs", hint=_SAVE_HINT)
    for item in inputs:
        if not item.dims or isinstance(item.dims[0], int):
            fixed = "is a scalar" if not item.dims else f"has a fixed first dimension of {item.dims[0]}"
            raise ModelError(f"input '{item.name}' of {what} {fixed}; cloudml batches requests along the first dimension, so it must be dynamic",
                             hint=f"export with dynamic_shapes={{'{item.name}': {{0: torch.export.Dim('batch')}}}}")
    out_spec = program.call_spec.out_spec
    n_outputs = len(program.graph_signature.user_outputs)
    if out_spec is not None and out_spec.type is dict and len(out_spec.context) == n_outputs:
        output_names = [str(key) for key in out_spec.context]
    else:
        output_names = [f"output_{i}" for i in range(n_outputs)]
    signature = Signature(
        inputs={item.name: TensorSpec(dtype=item.dtype, shape=[None if not isinstance(d, int) else d for d in item.dims]) for item in inputs},
        outputs={},  # read from the ONNX graph once exported
    )
    checked = None if sample is None else _sample_batch(sample, signature, what)  # before the export: a bad sample fails fast
    try:
        exported = torch.onnx.export(program, (), None, dynamo=True, verbose=False, input_names=[i.name for i in inputs], output_names=output_names)
        assert exported is not None  # the dynamo exporter returns its ONNXProgram
        exported.save(str(target), external_data=_needs_external_data([*program.state_dict.values(), *program.constants.values()]))
    except Exception as exc:
        raise _conversion_error(exc, what) from None

    module = program.module()
    in_spec = program.call_spec.in_spec
    example = _example_arrays(program, inputs)
    batches = _program_probes(program, inputs, example)
    if checked is not None:
        batches.append(checked)

    def call(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        flat = [torch.from_numpy(np.ascontiguousarray(arrays[item.name])) for item in inputs]
        args, kwargs = torch.utils._pytree.tree_unflatten(flat, in_spec) if in_spec is not None else (flat, {})
        return _run_torch(module, args, kwargs, what)

    probes = [(batch, call(batch)) for batch in batches]
    return signature, probes, checked is not None


def _numpy_dtype(dtype, name: str, what: Path) -> str:
    import torch

    try:
        return torch.empty(0, dtype=dtype).numpy().dtype.name
    except TypeError:
        raise ModelError(f"input '{name}' of {what} is {dtype}, which has no numpy/JSON equivalent", hint="export the model with float32 inputs") from None


def _needs_external_data(tensors: list) -> bool:
    # ONNX's protobuf stops at 2 GB: larger weights go to a file beside the graph (model.onnx.data).
    return sum(t.numel() * t.element_size() for t in tensors if hasattr(t, "numel")) > 1_800_000_000


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    # The TorchScript interpreter puts the model's traceback first and the error itself last.
    return lines[-1] if lines[0].startswith("The following operation failed in the TorchScript interpreter") else lines[0]


def _conversion_error(exc: BaseException, what: Path) -> ModelError:
    """The reason the exporter gives: the operator with no ONNX function when that is it."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        match = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", str(error))
        legacy = re.search(r"Exporting the operator '([^']+)' to ONNX opset version \d+ is not supported", str(error))
        if legacy:
            return ModelError(
                f"{what} cannot be exported to ONNX: the operator {legacy.group(1)} has no ONNX mapping in torch.onnx's TorchScript exporter",
                hint="save the model as a torch.export program instead (torch.export.save(torch.export.export(model, (example,), "
                "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2')): its exporter maps more operators",
            )
        if match:
            return ModelError(
                f"{what} cannot be exported to ONNX: the operator {match.group(1)} has no ONNX mapping in torch.onnx",
                hint="replace that operation with ones ONNX supports, or export the model to ONNX yourself with a "
                "custom_translation_table in torch.onnx.export(..., dynamo=True) and package the .onnx file",
            )
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    summary = text.split("## Exception summary", 1)[-1].split("(Refer to the full stack trace", 1)[0].strip()
    reason = summary.splitlines()[0] if summary else _first_line(exc)
    return ModelError(f"{what} cannot be exported to ONNX: {reason}",
                      hint="cloudml serves PyTorch models through ONNX Runtime; see why with torch.onnx.export(program, (), dynamo=True, report=True), "
                      "or package an .onnx file")


def _example_arrays(program, inputs: list[_Input]) -> dict[str, np.ndarray] | None:
    """The example inputs the program was exported with, when the .pt2 kept them."""
    import torch

    example = getattr(program, "example_inputs", None)
    if not example:
        return None
    flat, _ = torch.utils._pytree.tree_flatten(example)
    if len(flat) != len(inputs) or not all(isinstance(t, torch.Tensor) for t in flat):
        return None
    return {item.name: t.detach().cpu().numpy() for item, t in zip(inputs, flat)}


def _program_probes(program, inputs: list[_Input], example: dict[str, np.ndarray] | None) -> list[dict[str, np.ndarray]]:
    """Probe batches at batch sizes 1 and 4 and, when other dimensions are dynamic, at two lengths of each."""
    ranges = program.range_constraints
    batch_symbols = {item.dims[0] for item in inputs if getattr(item.dims[0], "is_Symbol", False)}
    symbols = {s for item in inputs for d in item.dims if not isinstance(d, int) for s in d.free_symbols}
    others = symbols - batch_symbols

    def clamp(symbol, value: int) -> int:
        bounds = ranges.get(symbol)
        if bounds is None:
            return value
        low, high = _bound(bounds.lower), _bound(bounds.upper)
        return max(value if low is None else low, min(value if high is None else high, value))

    rng = np.random.default_rng(0)
    batches = []
    for length in _LENGTHS[: 2 if others else 1]:
        for batch in _BATCHES:
            values = {s: clamp(s, batch) for s in batch_symbols} | {s: clamp(s, length) for s in others}
            batches.append({item.name: _random(rng, item.dtype, [d if isinstance(d, int) else int(d.subs(values)) for d in item.dims],
                                               None if example is None else example[item.name]) for item in inputs})
    if example is not None:
        batches.append(example)
    return batches


def _bound(value) -> int | None:
    try:
        return int(value)
    except Exception:  # torch's int_oo (an unbounded dimension) converts to nothing
        return None


def _random(rng: np.random.Generator, dtype: str, shape: list[int], like: np.ndarray | None) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.issubdtype(np.dtype(dtype), np.integer):
        # Integer inputs are usually indices: stay inside the range the example or sample used.
        low, high = (int(like.min()), int(like.max())) if like is not None and like.size else (0, 1)
        return rng.integers(low, high + 1, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _run_torch(module, args, kwargs, what: Path, *, on: str = "a probe batch") -> list[np.ndarray]:
    import torch

    try:
        with torch.no_grad():
            result = module(*args, **kwargs)
    except Exception as exc:
        raise ModelError(f"{what} failed on {on}: {_first_line(exc)}",
                         hint="check the sample's shapes and dtypes match what the model takes (write floats with a decimal point: 1.0)") from None
    flat, _ = torch.utils._pytree.tree_flatten(result)
    return [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in flat]


# --- TorchScript ---------------------------------------------------------------------------------


def _export_script(model_file: Path, target: Path, *, sample: list | None, what: Path):
    import torch

    _check_kind(model_file, "torchscript", what)
    try:
        module = torch.jit.load(str(model_file), map_location="cpu")
    except Exception as exc:
        raise ModelError(f"torch.jit.load could not read {what}: {_first_line(exc)}", hint=_SAVE_HINT) from None
    module.eval()
    arguments = module.forward.schema.arguments[1:]  # the first is the module itself
    if sample is None:
        raise ModelError(
            f"{what} is a TorchScript file, which records no input shapes: cloudml needs a sample request to learn them",
            hint="pass a JSON file of a few instances, as a request's 'instances' list, with --sample (one array per instance, or "
            "{input name: array} for several inputs), or save a torch.export program instead: torch.export.save(torch.export.export("
            "model, (example,), dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2')",
        )
    batch = _script_sample(sample, [a.name for a in arguments], [a.name for a in arguments if not a.has_default_value()], what)
    names = list(batch)
    signature = Signature(inputs={name: TensorSpec(dtype=str(value.dtype), shape=[None, *value.shape[1:]]) for name, value in batch.items()}, outputs={})

    def call(arrays: dict[str, np.ndarray], on: str = "a probe batch") -> list[np.ndarray]:
        return _run_torch(module, [], {name: torch.from_numpy(np.ascontiguousarray(arrays[name])) for name in names}, what, on=on)

    reference = call(batch, "the sample")
    output_names = [f"output_{i}" for i in range(len(reference))]
    example = tuple(torch.from_numpy(batch[name]) for name in names)
    try:
        # torch.onnx's dynamo exporter refuses a ScriptModule in torch 2.13; the TorchScript exporter
        # (dynamo=False, deprecated but public) converts it, with the batch as the one dynamic axis.
        with _native_output_discarded():
            torch.onnx.export(module, example, str(target), dynamo=False, input_names=names, output_names=output_names,
                              dynamic_axes={name: {0: "batch"} for name in names + output_names})
    except Exception as exc:
        raise _conversion_error(exc, what) from None
    rng = np.random.default_rng(0)
    batches = [{name: _random(rng, signature.inputs[name].dtype, [size, *value.shape[1:]], value) for name, value in batch.items()} for size in _BATCHES]
    probes = [(b, call(b)) for b in batches] + [(batch, reference)]
    return signature, probes, True


@contextlib.contextmanager
def _native_output_discarded() -> Iterator[None]:
    """The TorchScript exporter's C++ log is always on in torch 2.13 and prints the whole IR graph to
    stdout when an export fails; the exception says what went wrong, and stdout may carry --json output."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _script_sample(sample: list, arguments: list[str], required: list[str], what: Path) -> dict[str, np.ndarray]:
    """The sample's instances as one batch per input, in the order the model's forward takes them."""
    if not isinstance(sample, list) or not sample:
        raise ModelError(f"the sample for {what} must be a non-empty list of instances", hint='e.g. {"instances": [[0.1, 0.2, 0.3]]}')
    if all(isinstance(instance, dict) for instance in sample):
        given = set(sample[0])
        unknown = given - set(arguments)
        missing = set(required) - given
        if unknown or missing or any(set(instance) != given for instance in sample):
            raise ModelError(f"the sample's instances must all name the inputs of {what}: {', '.join(required) or 'none'}"
                             + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
                             + (f" (missing: {', '.join(sorted(missing))})" if missing else ""),
                             hint="give each instance as {input name: array}, with the same names in every instance")
        columns = {name: [instance[name] for instance in sample] for name in arguments if name in given}
    elif len(required) <= 1 and arguments and not any(isinstance(instance, dict) for instance in sample):
        columns = {arguments[0]: sample}
    else:
        raise ModelError(f"{what} takes {len(required)} inputs ({', '.join(required)}): each instance of the sample must be a dict of them",
                         hint='e.g. {"instances": [{"' + '": [...], "'.join(required) + '": [...]}]}')
    batch = {}
    for name, values in columns.items():
        try:
            array = np.asarray(values)
        except ValueError:
            array = np.asarray(values, dtype=object)
        if array.dtype == object:
            raise ModelError(f"the sample's instances of input '{name}' differ in shape", hint="give every instance the same shape")
        batch[name] = _sample_dtype(array, name)
    return batch


def _sample_dtype(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind == "f":
        return array.astype(np.float32)  # JSON has one float type; torch models take float32
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "b":
        return array
    raise ModelError(f"the sample's input '{name}' holds {array.dtype} values; torch models take numbers or booleans", hint="give numbers")


def _sample_batch(sample: list, signature: Signature, what: Path) -> dict[str, np.ndarray]:
    """The sample as a batch for a .pt2, checked against the program's input shapes."""
    names = list(signature.inputs)
    batch = _script_sample(sample, names, names, what)
    for name, spec in signature.inputs.items():
        value = batch[name]
        expected = spec.instance_shape or []
        if value.ndim != len(expected) + 1 or any(d is not None and d != got for d, got in zip(expected, value.shape[1:])):
            raise ModelError(f"the sample's input '{name}' has shape {list(value.shape[1:])} per instance; {what} takes {spec.describe()}",
                             hint="give instances of the shape the model takes")
        if np.dtype(spec.dtype).kind in "iub" and value.dtype.kind != np.dtype(spec.dtype).kind:
            raise ModelError(f"the sample's input '{name}' holds {value.dtype} values; {what} takes {spec.dtype}",
                             hint="give integers for integer inputs and true/false for boolean ones")
        batch[name] = value.astype(spec.dtype)
    return batch


# --- the ONNX graph and its verification ---------------------------------------------------------


def _onnx_graph(target: Path, inputs: list[str], torch_version: str) -> tuple[OnnxGraph, dict[str, TensorSpec]]:
    """The graph's opset and names, and its outputs' specs (dynamic dimensions as None)."""
    import onnx

    model = onnx.load(str(target), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    outputs = {}
    for value in model.graph.output:
        tensor = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim] if tensor.HasField("shape") else None
        if shape:
            shape[0] = None  # the batch
        outputs[value.name] = TensorSpec(dtype=dtype, shape=shape)
    graph = OnnxGraph(file=ONNX_FILE, opset=opset, producer=f"pytorch {torch_version}",
                      inputs={name: name for name in inputs}, outputs={name: name for name in outputs},
                      index_ranges={name: bounds for name, bounds in index_ranges(model).items() if name in inputs})
    return graph, outputs


def _verify(target: Path, graph: OnnxGraph, probes: list, tolerance: Tolerance, *, used_sample: bool, what: Path) -> Verification:
    """ONNX Runtime's outputs beside torch's on every probe: |onnx - torch| <= atol + rtol * |torch| elementwise.
    The relative difference reported is |onnx - torch| / max(|torch|, atol), so that zeros do not dominate it."""
    from cloudml.backends.onnx import OnnxBackend

    backend = OnnxBackend(target, inputs=graph.inputs, outputs=graph.outputs, threads=1)
    names = list(graph.outputs)
    passed, max_abs, max_rel, worst = True, 0.0, 0.0, None
    for batch, expected in probes:
        if len(expected) != len(names):
            raise ModelError(f"the ONNX export of {what} has {len(names)} outputs where torch returns {len(expected)}",
                             hint="return a tensor, a tuple of tensors or a dict of them from forward")
        got = backend.run(batch)
        for name, want in zip(names, expected):
            have = got[name]
            if have.shape != want.shape:
                raise ModelError(f"the ONNX export of {what} gives output '{name}' the shape {list(have.shape)} where torch gives {list(want.shape)}",
                                 hint="export the model to ONNX yourself (torch.onnx.export(model, args, dynamo=True)), check it, and package the .onnx file")
            if not want.size:
                continue
            a, b = np.asarray(have, dtype=np.float64), np.asarray(want, dtype=np.float64)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.where(same, 0.0, np.nan_to_num(np.abs(a - b), nan=np.finfo(np.float64).max))
            passed = passed and bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(b)))
            output_abs = float(diff.max())
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(b), tolerance.atol)).max()))
            if worst is None or output_abs > max_abs:
                max_abs, worst = output_abs, name
    return Verification(passed=passed, probes=len(probes), max_abs_diff=max_abs, max_rel_diff=max_rel, worst_output=worst, used_sample=used_sample)
