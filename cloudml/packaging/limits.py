"""Bounds on what packaging unpacks, so a hostile or broken model is refused quickly and cleanly.

A `model.tar.gz` is counted as it is decompressed (archive.py); a `.keras` zip is checked from
its directory, before Keras reads any of it (`check_keras_zip`). The limits are read from the
environment when they are applied, so they reach packaging child processes and servers too.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cloudml.errors import ConfigError, ModelError

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
    def from_env(cls, environ=None) -> "Limits":
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
