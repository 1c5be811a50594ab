"""A private copy of the user's model, made while hashing it: the one read of the model a deploy makes.

A deploy needs the model's digest to plan (is it unchanged?) before it packages, and packaging
needs the model's bytes. Copying while hashing gives both from one read: the plan, the image
choice and the package all come from the copy, so what is served is exactly what was hashed even
if the model is rewritten meanwhile. `package_model(snapshot=...)` moves the copy into the
package instead of reading the model again.

A cloudml package folder is not copied (its manifest holds its digest, and it is served as it is).
Each snapshot lives in a folder named after the process that made it, so the folder of a deploy
that was killed is removed by the next one, and a concurrent deploy's is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudml.contract import Manifest
from cloudml.errors import ConfigError
from cloudml.packaging.hashing import copy_hashed
from cloudml.packaging.source import ModelSource, inspect_source

_PREFIX = ".snapshot-"


@dataclass(frozen=True)
class Snapshot:
    original: ModelSource  # what the user gave (named in messages and the manifest)
    source: ModelSource  # what to read: the private copy, or the package folder itself
    digest: str  # the content hash of those bytes ("sha256:<hex>")

    @property
    def copy(self) -> Path | None:
        """The private copy, which packaging may move into the package; None for a package folder, read where it is."""
        return self.source.path if self.source.path != self.original.path else None


@contextlib.contextmanager
def snapshot_model(source: ModelSource, parent: Path) -> Iterator[Snapshot]:
    """Copy `source` into a new folder below `parent` while hashing it; the copy is removed on
    exit, unless packaging moved it into a package first."""
    if source.format == "package":
        yield Snapshot(original=source, source=source, digest=Manifest.read(source.path).content_hash)
        return
    folder: Path | None = None
    try:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(parent)
            folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent))
            # The copy keeps the names the model is known by (a TF Serving base folder's, a file's suffix).
            relative = Path(source.path.parent.name, source.path.name) if source.format == "saved_model" and source.version else Path(source.path.name)
            copy = folder / relative
            digest = copy_hashed(source.path, copy)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise ConfigError(
                f"could not copy {source.path} into {parent} to hash and package it: {(exc.strerror or str(exc)).lower()}; nothing was deployed or changed",
                hint="a deploy keeps a copy of the model while it runs: make room for one there (as large as the model), "
                     "or point CLOUDML_HOME (clouds: -o work_dir=...) at a disk that has it" if full else
                     f"check that you can read {source.path} and write to {parent}",
            ) from None
        yield Snapshot(original=source, source=ModelSource(copy, source.format, source.version), digest=digest)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def copy_of(original: Path | str, copy: Path) -> ModelSource:
    """The model at `original` as its snapshot `copy` shows it, without opening `original`."""
    seen = inspect_source(copy)
    return ModelSource(Path(original).expanduser(), seen.format, seen.version)


def _remove_abandoned(parent: Path) -> None:
    """Snapshots of processes that are gone (a deploy killed while it packaged)."""
    for entry in parent.glob(f"{_PREFIX}*"):
        pid = entry.name[len(_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
