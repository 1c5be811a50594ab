"""Content hashes computed by streaming, so a multi-GB model is never held in memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

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


def content_hash(path: Path, *, exclude: frozenset[str] = frozenset()) -> str:
    """`sha256:<hex>` of a file's bytes, or of a folder's relative paths and file bytes."""
    if path.is_file():
        return "sha256:" + file_digest(path).hexdigest()
    digest = hashlib.sha256()
    for rel, full in iter_files(path):
        if rel in exclude:
            continue
        # Length-prefix each path so that renames cannot collide with content.
        encoded = rel.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded + full.stat().st_size.to_bytes(8, "big"))
        file_digest(full, digest)
    return "sha256:" + digest.hexdigest()
