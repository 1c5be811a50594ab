"""Content hashes computed by streaming, so a multi-GB model is never held in memory.

`copy_hashed` copies a model while hashing it, giving the digest `content_hash` would: packaging
reads the model once and packages the very bytes it hashed. `HashingWriter` hashes what is
written through it (the archive as it is compressed), so nothing is read back to hash it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cloudml.errors import ModelError

CHUNK = 1 << 20


def iter_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) for every regular file below `root`, sorted, refusing links."""
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in dirnames + filenames:
            full = base / name
            if full.is_symlink():
                raise ModelError(f"{full} is a symbolic link; cloudml packages only regular files", hint="copy the target in place of the link")
        for name in filenames:
            full = base / name
            entries.append((full.relative_to(root).as_posix(), full))
    return iter(sorted(entries))


def file_digest(path: Path, digest=None):
    digest = digest or hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest


def _entry_header(rel: str, size: int) -> bytes:
    # Length-prefix each path so that renames cannot collide with content.
    encoded = rel.encode()
    return len(encoded).to_bytes(8, "big") + encoded + size.to_bytes(8, "big")


def content_hash(path: Path, *, exclude: frozenset[str] = frozenset()) -> str:
    """`sha256:<hex>` of a file's bytes, or of a folder's relative paths and file bytes."""
    if path.is_file():
        return "sha256:" + file_digest(path).hexdigest()
    digest = hashlib.sha256()
    for rel, full in iter_files(path):
        if rel in exclude:
            continue
        digest.update(_entry_header(rel, full.stat().st_size))
        file_digest(full, digest)
    return "sha256:" + digest.hexdigest()


def _copy_file(source: Path, target: Path, digest, *, size: int | None = None) -> None:
    copied = 0
    with source.open("rb") as src, target.open("xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if size is not None and copied != size:
        raise ModelError(f"{source} changed size while cloudml was reading it", hint="let whatever writes the model finish, then try again")


def copy_hashed(source: Path, target: Path) -> str:
    """Copy the file or folder `source` to `target` (which must not exist) and return the
    `content_hash` of the bytes copied, read once. Links are refused, as `content_hash` does."""
    digest = hashlib.sha256()
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_file(source, target, digest)
        return "sha256:" + digest.hexdigest()
    files = list(iter_files(source))
    target.mkdir(parents=True)
    for dirpath, dirnames, _ in os.walk(source):
        # Empty folders too (a SavedModel's assets/): the copy is the model as it was.
        for name in dirnames:
            (target / Path(dirpath).relative_to(source) / name).mkdir()
    for rel, full in files:
        size = full.stat().st_size
        digest.update(_entry_header(rel, size))
        _copy_file(full, target / rel, digest, size=size)
    return "sha256:" + digest.hexdigest()


class HashingWriter:
    """A write-only file object that hashes every byte on its way to `raw`."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self._digest = hashlib.sha256()

    def write(self, data) -> int:
        self._digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._digest.hexdigest()
