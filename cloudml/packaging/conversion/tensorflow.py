"""A SavedModel's serving signature converted to ONNX with tf2onnx, in this process.

It makes the two calls `python -m tf2onnx.convert --saved-model DIR --signature_def
serving_default` makes (tf2onnx.convert.main), here rather than in a subprocess: packaging runs in
a child process that has TensorFlow imported already, and a subprocess would pay that import
(~6 s here) again for a conversion that takes 0.3 to 1.2 s on the seed models.

tf2onnx leaves an op it has no mapping for in the graph as it is and only logs it, so its log
records are read (and kept off stderr) to name that op.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloudml.contract import SIGNATURE_NAME, OnnxGraph, Signature
from cloudml.packaging.conversion.errors import NotConvertible, first_line
from cloudml.packaging.conversion.ranges import index_ranges

_PROTOBUF_LIMIT = 2 << 30  # an ONNX file is one protobuf message, which cannot reach 2 GiB


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def unmapped_ops(self) -> list[str]:
        """The op types tf2onnx logged as having no ONNX mapping ("Tensorflow op [node: Op] is not supported")."""
        ops = []
        for record in self.records:
            if record.msg == "Tensorflow op [%s: %s] is not supported" and isinstance(record.args, tuple) and len(record.args) == 2:
                ops.append(str(record.args[1]))
        return sorted(set(ops))

    def failed_nodes(self) -> list[str]:
        return [str(r.args[0]) for r in self.records if str(r.msg).startswith("Failed to convert node") and isinstance(r.args, tuple) and r.args]

    def text(self) -> str | None:
        """What tf2onnx warned about, for an error's details (its last lines)."""
        lines = [f"{r.levelname}: {r.getMessage()}" for r in self.records if r.levelno >= logging.WARNING and r.name.startswith("tf2onnx")]
        return "\n".join(lines[-20:]) or None


@contextmanager
def _captured_logs() -> Iterator[_Records]:
    """tf2onnx's and TensorFlow's Python log records (deprecation notices, progress) kept here, not printed."""
    handler = _Records()
    saved = []
    for name in ("tf2onnx", "tensorflow"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO if name == "tf2onnx" else logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield handler
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def convert_saved_model(version_dir: Path, signature: Signature, out: Path, *, opset: int = 17) -> OnnxGraph:
    """Write `serving_default` of the SavedModel in `version_dir` as ONNX to `out`; its graph's names.

    `out` belongs in `version_dir` (the graph's `file` is its name there). Raises NotConvertible,
    its reason one short line that names the op when an op is what failed; `out` is then absent."""
    try:
        return _convert(version_dir, signature, out, opset=opset)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _convert(version_dir: Path, signature: Signature, out: Path, *, opset: int) -> OnnxGraph:
    variables = sum(f.stat().st_size for f in (version_dir / "variables").glob("*") if f.is_file())
    if variables >= _PROTOBUF_LIMIT:
        raise NotConvertible(f"the model's weights ({variables / 2**30:.1f} GiB) do not fit in one ONNX file (2 GiB)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx
    import tensorflow as tf

    with _captured_logs() as logs:
        try:
            import tf2onnx
            from tf2onnx import convert, tf_loader

            graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                str(version_dir), None, None, ["serve"], [SIGNATURE_NAME], None, False,
                return_initialized_tables=True, return_tensors_to_rename=True)
            with tf.device("/cpu:0"):
                proto, _ = convert._convert_common(graph_def, name=str(version_dir), opset=opset, input_names=inputs, output_names=outputs,
                                                   tensors_to_rename=renames, initialized_tables=tables)
        except Exception as exc:
            raise NotConvertible(_failure(exc, logs), details=logs.text()) from exc
    # An op tf2onnx cannot map stays in the graph under its TensorFlow name, which no ONNX opset defines.
    unmapped = sorted(set(logs.unmapped_ops()) | {n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
    if unmapped:
        raise NotConvertible(_no_mapping(unmapped), details=logs.text())
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise NotConvertible(f"tf2onnx wrote an ONNX graph that does not check: {first_line(exc)}", details=logs.text()) from exc
    graph_inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    graph_outputs = [o.name for o in proto.graph.output]
    # tf2onnx names the graph's tensors after the signature's (its `tensors_to_rename`); anything
    # else would leave no sound way to tell which tensor is which.
    if sorted(graph_inputs) != sorted(signature.inputs) or sorted(graph_outputs) != sorted(signature.outputs):
        raise NotConvertible(f"the ONNX graph's tensors are named {graph_inputs} -> {graph_outputs}, not as the signature's "
                             f"{list(signature.inputs)} -> {list(signature.outputs)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    default_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    return OnnxGraph(file=out.name, opset=default_opset, producer=f"tf2onnx {tf2onnx.__version__}",
                     inputs={name: name for name in signature.inputs}, outputs={name: name for name in signature.outputs},
                     index_ranges=index_ranges(proto))


def _failure(exc: Exception, logs: _Records) -> str:
    unmapped, nodes = logs.unmapped_ops(), logs.failed_nodes()
    if unmapped:
        return _no_mapping(unmapped)
    if nodes:
        return f"tf2onnx could not convert node {nodes[0]}: {type(exc).__name__}: {first_line(exc)}"
    return f"tf2onnx failed: {type(exc).__name__}: {first_line(exc)}"


def _no_mapping(ops: list[str]) -> str:
    return f"tf2onnx has no ONNX mapping for op{'s' if len(ops) > 1 else ''} {', '.join(ops)}"
