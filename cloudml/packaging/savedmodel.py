"""Turn any accepted model into a versioned SavedModel with a `serving_default` signature.

This is the one packaging module that imports TensorFlow, and only inside its functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudml.contract import SIGNATURE_NAME, Signature, TensorSpec
from cloudml.errors import ModelError
from cloudml.packaging.limits import check_h5, check_keras_zip
from cloudml.packaging.source import ModelSource


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def export_keras(source: ModelSource, target: Path, *, copy: Path | None = None) -> None:
    """Load a .keras/.h5 file (from `copy`, cloudml's copy of it, when given) and export its
    inference function as a SavedModel at `target`. Errors name the user's file. A file that
    unpacks past the limits, or whose config declares more variables than it stores (limits.py),
    is refused before Keras reads any of it."""
    model_file = copy or source.path
    if source.format == "keras":
        check_keras_zip(model_file, what=source.path)
    else:
        check_h5(model_file, what=source.path, packed=model_file.stat().st_size)
    _quiet_tensorflow()
    import keras

    try:
        # safe_mode: no code from the file (a Lambda layer's bytecode) runs, whatever the Keras config says.
        model = keras.models.load_model(model_file, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise ModelError(
            f"Keras could not load {source.path}: {exc}",
            hint="check the file was written by model.save(); cloudml runs no code from a model file, so for a model "
            "with Lambda or custom layers run model.export(path) where it was built and package that SavedModel",
        ) from exc
    try:
        model.export(str(target), format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise ModelError(f"could not export {source.path} as a SavedModel: {exc}") from exc


def _tensor_spec(info) -> TensorSpec:
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(info.dtype)
    name = "string" if dtype == tf.string else dtype.as_numpy_dtype.__name__
    if info.tensor_shape.unknown_rank:
        return TensorSpec(dtype=name, shape=None)
    return TensorSpec(dtype=name, shape=[None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim])


def read_signature(version_dir: Path) -> tuple[Signature, str]:
    """The serving signature and the TensorFlow version recorded in `saved_model.pb`.

    Reads the protobuf rather than loading the graph: fast, and it runs no model code.
    """
    _quiet_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise ModelError(f"{version_dir / 'saved_model.pb'} is not a valid SavedModel: {exc}") from exc
    if not proto.meta_graphs:
        raise ModelError(f"{version_dir} holds a SavedModel with no graph")
    graph = next((g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags), proto.meta_graphs[0])
    signatures = graph.signature_def
    if SIGNATURE_NAME not in signatures:
        available = ", ".join(sorted(k for k in signatures if not k.startswith("__"))) or "none"
        raise ModelError(
            f"the SavedModel in {version_dir} has no '{SIGNATURE_NAME}' signature (it has: {available})",
            hint="export the Keras model with model.export(path), or save with "
            "tf.saved_model.save(obj, path, signatures={'serving_default': fn})",
        )
    sig = signatures[SIGNATURE_NAME]
    signature = Signature(
        inputs={k: _tensor_spec(v) for k, v in sorted(sig.inputs.items())},
        outputs={k: _tensor_spec(v) for k, v in sorted(sig.outputs.items())},
    )
    return signature, graph.meta_info_def.tensorflow_version or "unknown"
