"""Bounds on what packaging unpacks, so a hostile or broken model is refused quickly and cleanly.

A `model.tar.gz` is counted as it is decompressed (archive.py); a `.keras` zip is checked from
its directory and an HDF5 file (a legacy `.h5`, a `.keras` file's weights) from its metadata,
before Keras reads any of it (`check_keras_zip`, `check_h5`). Both also check what the model's
config declares against what the file stores (`check_declared`): Keras allocates every declared
variable before it reads a weight. The limits are read from the environment when they are
applied, so they reach packaging child processes and servers too.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cloudml.errors import ConfigError, ModelError
from cloudml.packaging.declared import declared_variables

MAX_BYTES_VAR = "CLOUDML_MAX_MODEL_BYTES"
MAX_RATIO_VAR = "CLOUDML_MAX_COMPRESSION_RATIO"
MAX_MEMBERS_VAR = "CLOUDML_MAX_ARCHIVE_MEMBERS"
# Below this unpacked size any ratio is allowed: small files of zeros (fresh biases, padding)
# compress far better than 100:1 and are harmless.
RATIO_FLOOR = 16 << 20


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _positive_int(environ, name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name}={text!r} is not a positive whole number", hint=f"set {name} to a number such as {default}, or unset it for the default")
    return value


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 << 30  # a model's unpacked size
    max_ratio: int = 100  # unpacked bytes per packed byte, above RATIO_FLOOR
    max_members: int = 10_000  # files and folders in an archive

    @classmethod
    def from_env(cls, environ=None) -> Limits:
        environ = os.environ if environ is None else environ
        return cls(
            max_bytes=_positive_int(environ, MAX_BYTES_VAR, cls.max_bytes),
            max_ratio=_positive_int(environ, MAX_RATIO_VAR, cls.max_ratio),
            max_members=_positive_int(environ, MAX_MEMBERS_VAR, cls.max_members),
        )

    def check_size(self, unpacked: int, packed: int, what: object) -> None:
        """Refuse `what` once it unpacks to `unpacked` bytes from `packed` bytes past a limit."""
        if unpacked > self.max_bytes:
            raise ModelError(
                f"{what} unpacks to more than {_human(self.max_bytes)}, the limit on a model's unpacked size ({MAX_BYTES_VAR})",
                hint=f"if the model really is that large, raise the limit, e.g. export {MAX_BYTES_VAR}={2 * self.max_bytes}",
            )
        if unpacked > RATIO_FLOOR and unpacked > self.max_ratio * packed:
            raise ModelError(
                f"{what} expands more than {self.max_ratio} times ({_human(packed)} packed, over {_human(unpacked)} unpacked), "
                f"the limit on compression ratio ({MAX_RATIO_VAR}): it looks like a decompression bomb",
                hint=f"if the model really compresses that well, raise the limit, e.g. export {MAX_RATIO_VAR}={10 * self.max_ratio}",
            )

    def check_members(self, count: int, what: object) -> None:
        if count > self.max_members:
            raise ModelError(
                f"{what} holds more than {self.max_members} files and folders, the limit on archive members ({MAX_MEMBERS_VAR})",
                hint=f"if the model really has that many files, raise the limit, e.g. export {MAX_MEMBERS_VAR}={10 * self.max_members}",
            )


def check_keras_zip(path: Path, *, what: object, limits: Limits | None = None) -> None:
    """Refuse a `.keras` zip whose directory declares more than the limits allow, reading only
    the directory. Python's zipfile, which Keras reads with, never yields more than a member
    declares, so the declared sizes bound what Keras can unpack. Ratios are per member, so a
    bomb cannot hide behind genuine weights stored beside it."""
    limits = limits or Limits.from_env()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelError(f"{what} is not a valid .keras file ({exc})", hint="re-save it with model.save('model.keras')") from None
    limits.check_members(len(members), what)
    for member in members:
        limits.check_size(member.file_size, member.compress_size, f"{what} (its member {member.filename!r})")
    limits.check_size(sum(m.file_size for m in members), path.stat().st_size, what)
    names = {m.filename: m for m in members}
    stored = 0
    with zipfile.ZipFile(path) as archive:
        if "model.weights.h5" in names:
            weights = names["model.weights.h5"]
            with _member(archive, path, weights) as handle:
                stored = check_h5(handle, what=f"{what} (its member 'model.weights.h5')", packed=weights.compress_size, limits=limits)
        elif "model.weights.npz" in names:
            # Its arrays are pickled (unread here): its size bounds the values they can hold, at a byte each.
            stored = names["model.weights.npz"].file_size
        config = archive.read("config.json") if "config.json" in names else None
    if config is not None:
        check_declared(config, stored=stored, what=what, limits=limits)


def _member(archive: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo):
    """A zip member to read HDF5 metadata from. Keras stores its members uncompressed; those are
    read in place, because zipfile re-reads a member from its start on every backward seek."""
    if info.compress_type != zipfile.ZIP_STORED:
        return archive.open(info)
    handle = path.open("rb")
    handle.seek(info.header_offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        handle.close()
        raise ModelError(f"{path} is not a valid .keras file (a damaged zip header)", hint="re-save it with model.save('model.keras')")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return _Window(handle, info.header_offset + 30 + name_length + extra_length, info.file_size)


class _Window(io.RawIOBase):
    """Bytes `start` to `start + size` of an open file, as a file of their own."""

    def __init__(self, handle, start: int, size: int):
        self.handle, self.start, self.size, self.pos = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, offset + {0: 0, 1: self.pos, 2: self.size}[whence])
        return self.pos

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self.size - self.pos))
        self.handle.seek(self.start + self.pos)
        data = self.handle.read(count)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self.handle.close()
        super().close()


def check_h5(source, *, what: object, packed: int, limits: Limits | None = None) -> int:
    """Refuse an HDF5 file (a legacy .h5 model, or a .keras file's weights) whose datasets
    declare more than the limits allow, and a legacy .h5 model whose config declares more
    variables than it stores (`check_declared`). HDF5 compresses datasets itself, and Keras reads
    each one whole, so a small file can make it allocate gigabytes; this reads only the metadata.
    Returns the number of values the datasets hold."""
    import h5py  # Keras needs it anyway; it imports no TensorFlow

    limits = limits or Limits.from_env()
    declared = stored = 0
    try:
        with h5py.File(source, "r") as h5:
            datasets = []
            h5.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
            for name, dataset in datasets:
                limits.check_size(dataset.nbytes, dataset.id.get_storage_size(), f"{what} (its dataset {name!r})")
                declared += dataset.nbytes
                stored += dataset.size
            config = h5.attrs.get("model_config")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{what} is not a readable HDF5 file ({exc})", hint="re-save the model with model.save()") from None
    limits.check_size(declared, packed, what)
    if config is not None:
        check_declared(config, stored=stored, what=what, limits=limits)
    return stored


# Parameters a config may declare beyond those its file stores: a few MiB allocated for nothing
# are harmless, and the slack keeps a lower bound's rounding from ever refusing a genuine model.
DECLARED_SLACK = RATIO_FLOOR // 4


def check_declared(config: str | bytes, *, stored: int, what: object, limits: Limits | None = None) -> None:
    """Refuse a model whose config (JSON) declares layers whose variables exceed the limit on a
    model's size, or exceed by more than DECLARED_SLACK the `stored` values of its weights: Keras
    allocates and initialises every declared variable before reading the weights, and a genuine
    model stores every weight it declares. A config that is no JSON is left to Keras to refuse."""
    limits = limits or Limits.from_env()
    try:
        layers = declared_variables(json.loads(config))
    except (ValueError, RecursionError):
        return
    params, nbytes = sum(d.params for d in layers), sum(d.nbytes for d in layers)
    largest = sorted(layers, key=lambda d: d.params, reverse=True)[:2]
    named = "; ".join(f"layer {d.path!r} ({d.class_name}, {d.detail}) declares {d.params:,} ({_human(d.nbytes)})" for d in largest)
    if nbytes > limits.max_bytes:
        raise ModelError(
            f"{what} declares layers whose variables take {_human(nbytes)}, more than {_human(limits.max_bytes)}, "
            f"the limit on a model's unpacked size ({MAX_BYTES_VAR}): {named}",
            hint=f"if the model really is that large, raise the limit, e.g. export {MAX_BYTES_VAR}={2 * nbytes}",
        )
    if params > stored + DECLARED_SLACK:
        raise ModelError(
            f"{what} declares {params:,} parameters ({_human(nbytes)}) but stores only {stored:,}: {named}. Keras "
            f"allocates every declared variable before it reads the weights, and a genuine model stores every weight "
            f"it declares (cloudml allows {DECLARED_SLACK:,} more)",
            hint="the file is damaged or was crafted: re-save the model with model.save() where it was trained",
        )
