"""Deterministic `model.tar.gz` (SageMaker TF Serving layout) and safe extraction.

Same folder content, same archive bytes: members are sorted, owners, modes and times are fixed,
and the gzip header carries no name or time. Files are streamed in and out, and the archive is
hashed as it is written, so its digest costs no second read.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from cloudml.errors import UnsafeArchiveError
from cloudml.packaging.hashing import HashingWriter, iter_files


def _normalised(info: tarfile.TarInfo, *, mode: int) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    return info


def write_archive(folder: Path, target: Path) -> str:
    """Write every file below `folder` at the root of the archive `target`; returns the
    archive's `sha256:<hex>`."""
    files = list(iter_files(folder))
    dirs = sorted({str(parent) for rel, _ in files for parent in PurePosixPath(rel).parents if str(parent) != "."})
    tmp = target.with_name(target.name + ".partial")
    with tmp.open("wb") as raw:
        hashed = HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashed, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel in dirs:
                    tar.addfile(_dir_info(rel))
                for rel, full in files:
                    info = _normalised(tarfile.TarInfo(rel), mode=0o644)
                    info.size = full.stat().st_size
                    with full.open("rb") as handle:
                        tar.addfile(info, handle)
    os.replace(tmp, target)
    return hashed.digest


def _dir_info(rel: str) -> tarfile.TarInfo:
    info = _normalised(tarfile.TarInfo(rel), mode=0o755)
    info.type = tarfile.DIRTYPE
    return info


def _check_member(member: tarfile.TarInfo, root: Path) -> Path:
    name = member.name
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"archive member {name!r} is a link; cloudml refuses links in model archives")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive member {name!r} is not a regular file or folder")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    destination = (root / name).resolve()
    if destination != root and root not in destination.parents:
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside the target folder")
    return destination


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract `archive` into `target`, refusing members that escape it or are links.

    Every member is checked before anything is written, so a refused archive leaves nothing behind.
    """
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            destinations = [(_check_member(m, root), m) for m in members]
            for destination, member in destinations:
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, destination.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{archive} is not a readable tar archive: {exc}") from exc
    return target
