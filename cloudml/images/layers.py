"""Reproducible image layers: the same files give the same bytes, wherever and whenever they are built.

A layer is a gzip-compressed tar. What would make two builds of the same files differ is taken
out: entries are sorted, every timestamp is MTIME, owners are 0:0 with no names, modes are
normalised (0755 for directories and executables, 0644 for the rest), no host path appears (entry
names are relative to the layer root), and the gzip header has mtime 0 and no file name.

Two digests name a layer: `digest` (sha256 of the compressed blob, what a manifest lists and a
registry stores) and `diff_id` (sha256 of the uncompressed tar, what the image config's rootfs
lists). Both are computed while the blob is written, in one pass, so a large layer never sits in
memory.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from cloudml.errors import ConfigError
from cloudml.images.oci import OCI_LAYER

# Every entry's timestamp: 1980-01-01, the earliest a zip can store (what wheels and SOURCE_DATE_EPOCH
# defaults commonly use); 0 would do too, but some tools show 1970 dates as "unknown".
MTIME = 315532800
# Fixed, so the blob does not depend on the zlib default of the Python that built it.
COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """One item of a layer: `path` inside the image (relative, POSIX); a file's bytes come from
    `data` or `source`; a symlink has `target`."""

    path: str
    kind: str = "file"  # "file", "dir" or "symlink"
    data: bytes | None = None
    source: Path | None = None
    executable: bool = False
    target: str | None = None
    mode: int | None = None  # overrides the normalised mode (e.g. 0o1777 for a root file system's tmp/)


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # "sha256:<hex>" of the compressed blob
    size: int  # bytes of the compressed blob
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    path: Path  # the compressed blob on disk
    comment: str = ""  # what the layer holds, for the image history


def clean_path(path: str) -> str:
    """The entry name as the tar stores it: relative, POSIX, no '..', no '.' parts."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", ".", "")]
    if not parts or ".." in parts:
        raise ConfigError(f"layer entry {path!r} is not a path inside the image", hint="use a relative path such as 'opt/cloudml/app.py'")
    return "/".join(parts)


def entries_from_tree(root: Path, prefix: str = "", exclude: Sequence[str] = (), *, rootfs: bool = False) -> list[Entry]:
    """Every file, directory and symlink under `root`, named `prefix/<relative path>` in the layer,
    but those whose name matches a pattern of `exclude` (fnmatch, e.g. "__pycache__", "*.pyc").

    Symlinks are kept as links when they point inside the tree; one pointing elsewhere (a host
    path) is refused rather than copied into the image. With `rootfs` the tree is a whole root
    file system: an absolute link names a path inside the image, and every link is checked
    against the tree's own names, never the host's."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder", hint="give the folder whose files the layer should hold")
    base = clean_path(prefix) if prefix.strip("/") else ""
    name = lambda rel: f"{base}/{rel}" if base else rel
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not any(fnmatch.fnmatchcase(d, pattern) for pattern in exclude))
        filenames = [f for f in filenames if not any(fnmatch.fnmatchcase(f, pattern) for pattern in exclude)]
        here = Path(dirpath)
        for item in dirnames + sorted(filenames):
            full = here / item
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(full)
                if rootfs:
                    inside = not posixpath.normpath(posixpath.join(posixpath.dirname(rel), target)).startswith("..") or target.startswith("/")
                else:
                    inside = not os.path.isabs(target) and (full.parent / target).resolve().is_relative_to(root.resolve())
                if not inside:
                    raise ConfigError(f"{full} links to {target}, outside {root}", hint="replace the link by the file it points to")
                out.append(Entry(name(rel), kind="symlink", target=target))
            elif stat.S_ISDIR(info.st_mode):
                out.append(Entry(name(rel), kind="dir"))
            elif stat.S_ISREG(info.st_mode):
                out.append(Entry(name(rel), source=full, executable=bool(info.st_mode & 0o111)))
            else:
                raise ConfigError(f"{full} is not a file, folder or symlink", hint="a layer holds only regular files, folders and symlinks")
    return out


def _tarinfo(entry: Entry, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target or ""
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o755 if entry.executable else 0o644, size
    if entry.mode is not None and entry.kind != "symlink":
        info.mode = entry.mode
    return info


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through on its way to `sink`."""

    def __init__(self, sink: Any):  # a file, a GzipFile, or None to only count
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)


def _complete(entries: Iterable[Entry]) -> list[Entry]:
    """The entries by name, each parent folder present once (as a 0755 directory), sorted."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = clean_path(entry.path)
        if entry.kind not in ("file", "dir", "symlink"):
            raise ConfigError(f"layer entry {path!r} has an unknown kind {entry.kind!r}", hint="use 'file', 'dir' or 'symlink'")
        if entry.kind == "file" and (entry.data is None) == (entry.source is None):
            raise ConfigError(f"layer entry {path!r} needs exactly one of data or source")
        entry = replace(entry, path=path)
        if by_path.get(path, entry) != entry:
            raise ConfigError(f"layer entry {path!r} is given twice, differently", hint="each path in a layer must be unique")
        by_path[path] = entry
        for parent in map(str, PurePosixPath(path).parents):
            if parent != ".":
                by_path.setdefault(parent, Entry(parent, kind="dir"))
    for path in by_path:
        parent = str(PurePosixPath(path).parent)
        if parent != "." and by_path[parent].kind != "dir":
            raise ConfigError(f"layer entry {path!r} sits below {parent!r}, which is a {by_path[parent].kind}", hint="a path's parents must be folders")
    return [by_path[p] for p in sorted(by_path)]


def build_layer(entries: Iterable[Entry], blob_dir: Path, *, comment: str = "") -> Layer:
    """Write the layer's blob under `blob_dir` (named by its digest) and return what names it."""
    blob_dir = Path(blob_dir)
    blob_dir.mkdir(parents=True, exist_ok=True)
    partial = blob_dir / f".partial-{os.getpid()}-{id(entries)}"
    try:
        compressed, uncompressed = _write(entries, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    digest = f"sha256:{compressed.sha.hexdigest()}"
    final = blob_dir / digest.replace(":", "-")
    os.replace(partial, final)
    return Layer(OCI_LAYER, digest, compressed.size, f"sha256:{uncompressed.sha.hexdigest()}", final, comment)


def _write(entries: Iterable[Entry], partial: Path) -> tuple[_Digesting, _Digesting]:
    with open(partial, "wb") as out:
        compressed = _Digesting(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=COMPRESS_LEVEL, mtime=0) as gz:
            uncompressed = _Digesting(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for entry in _complete(entries):
                    if entry.kind != "file":
                        tar.addfile(_tarinfo(entry))
                    elif entry.data is not None:
                        tar.addfile(_tarinfo(entry, len(entry.data)), io.BytesIO(entry.data))
                    else:
                        assert entry.source is not None
                        with open(entry.source, "rb") as src:
                            tar.addfile(_tarinfo(entry, os.fstat(src.fileno()).st_size), src)
    return compressed, uncompressed


def layer_from_tree(root: Path, blob_dir: Path, *, prefix: str = "", exclude: Sequence[str] = (), comment: str = "") -> Layer:
    """A layer holding the folder `root` at `prefix` inside the image (for example 'opt/cloudml')."""
    return build_layer(entries_from_tree(root, prefix, exclude), blob_dir, comment=comment or f"{prefix or '/'}")


# What a Python source tree holds that depends on the host and the run (bytecode of the host's Python).
PYTHON_JUNK = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def python_package_layer(package_dir: Path, blob_dir: Path, *, prefix: str, comment: str = "") -> Layer:
    """A layer holding a Python package's source folder as `prefix/<package name>` (bytecode left out)."""
    package_dir = Path(package_dir)
    return layer_from_tree(package_dir, blob_dir, prefix=f"{prefix.strip('/')}/{package_dir.name}", exclude=PYTHON_JUNK, comment=comment or package_dir.name)
