"""What a model says about itself without TensorFlow: the TensorFlow version that wrote (or, for
a Keras file, will write) its SavedModel. It is what chooses a prebuilt serving image, so a model
no image can serve is refused before seconds of packaging and before any upload.
"""

from __future__ import annotations

from importlib import metadata

from cloudml.packaging.source import ModelSource

# SavedModel.meta_graphs = 2 -> MetaGraphDef.meta_info_def = 1 -> MetaInfoDef.tensorflow_version = 5
# (tensorflow/core/protobuf/saved_model.proto and meta_graph.proto).
_VERSION_PATH = (2, 1, 5)
# Serialisers write fields in number order, so meta_info_def sits at the start of the first graph.
_HEAD_BYTES = 1 << 20


def tensorflow_version(source: ModelSource) -> str | None:
    """The TensorFlow that wrote the model's SavedModel; None when the model does not say."""
    if source.format == "saved_model":
        with (source.path / "saved_model.pb").open("rb") as handle:
            return _version_in(handle.read(_HEAD_BYTES))
    if source.format in ("keras", "h5"):
        return installed_tensorflow()  # packaging exports it with this TensorFlow
    return None  # a package or archive: its manifest says, once packaged (the deploy reads it there)


def installed_tensorflow() -> str | None:
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def _version_in(data: bytes) -> str | None:
    """Follow _VERSION_PATH through protobuf's wire format; None where the bytes end first."""
    for depth, wanted in enumerate(_VERSION_PATH):
        found = _field(data, wanted)
        if found is None:
            return None
        data = found
        if depth == len(_VERSION_PATH) - 1:
            try:
                return data.decode() or None
            except UnicodeDecodeError:
                return None
    return None


def _field(data: bytes, number: int) -> bytes | None:
    """The first length-delimited field `number` in a serialised message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key is None:
            return None
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if length is None:
                return None
            if field == number:
                # A truncated head can hold only part of the field: enough for what comes first.
                return data[pos:pos + length]
            pos += length
        else:
            return None  # groups (3, 4) are not used by these messages
        if pos < 0 or (pos > len(data) and wire != 2):
            return None
    return None


def _varint(data: bytes, pos: int) -> tuple[int | None, int]:
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    return None, -1
