"""Deterministic `model.tar.gz` (SageMaker TF Serving layout) and safe, bounded extraction.

Same folder content, same archive bytes: members are sorted, owners, modes and times are fixed,
and the gzip header carries no name or time. Files are streamed in and out, and the archive is
hashed as it is written, so its digest costs no second read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from cloudml.errors import UnsafeArchiveError
from cloudml.packaging.hashing import CHUNK, HashingWriter, iter_files
from cloudml.packaging.limits import Limits


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


_REBUILD = "rebuild the archive from the model folder: `cloudml package FOLDER`, or `tar czf model.tar.gz -C FOLDER .`"


class _Unreadable(Exception):
    """A read of the archive failed (truncated or corrupt data), as opposed to a write."""


class _Truncated(Exception):
    """The archive's data ends before the tar does: `str()` says where."""


class _EndCheckedInfo(tarfile.TarInfo):
    """Reads headers as tarfile does, except where tarfile quietly takes the end of the data, or
    a block that is no header, for the end of the archive: a tar cut at a member boundary would
    otherwise read as complete. A complete tar ends with two zero blocks after its last member."""

    @classmethod
    def fromtarfile(cls, tar):
        # TarInfo.fromtarfile, with the block looked at before frombuf takes it.
        block = tar.fileobj.read(tarfile.BLOCKSIZE)
        if tar.offset > 0 and len(block) < tarfile.BLOCKSIZE:
            raise _Truncated(f"after {tar.offset} bytes, where a member or the end-of-archive marker should start")
        if block == bytes(tarfile.BLOCKSIZE):
            second = tar.fileobj.read(tarfile.BLOCKSIZE)
            if len(second) < tarfile.BLOCKSIZE:
                raise _Truncated(f"after {tar.offset} bytes, within its end-of-archive marker")
            if second != block:  # tarfile would end here, dropping the members after it
                raise tarfile.ReadError(f"a lone zero block at byte {tar.offset}, followed by more data")
        try:
            info = cls.frombuf(block, tar.encoding, tar.errors)
        except tarfile.HeaderError as exc:
            if tar.offset == 0 or block == bytes(tarfile.BLOCKSIZE):
                raise  # tarfile's own "empty file", "invalid header" or end of the archive
            raise tarfile.ReadError(f"{exc} at byte {tar.offset}, after the last member that could be read") from None
        info.offset = tar.fileobj.tell() - tarfile.BLOCKSIZE
        return info._proc_member(tar)  # type: ignore[attr-defined]  # the hook tarfile leaves subclasses


class _CountedStream:
    """The decompressed tar stream, counted as tarfile reads it, so the limits stop extraction
    (and bound the memory tarfile's headers may take) at the limit."""

    def __init__(self, raw: io.BufferedIOBase, *, packed: int, limits: Limits, what: object):
        self.raw, self.packed, self.limits, self.what = raw, packed, limits, what
        self.count = 0
        self.exhausted = False  # the data ended: a tar error after that means it is truncated

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.raw.read(size)
        except EOFError as exc:  # the compressed stream ended early
            raise _Truncated(f"in the middle of its compressed data ({exc})") from exc
        except (OSError, zlib.error, lzma.LZMAError) as exc:
            raise _Unreadable(str(exc) or type(exc).__name__) from exc
        self.exhausted = self.exhausted or (not data and size != 0)
        self.count += len(data)
        self.limits.check_size(self.count, self.packed, self.what)
        return data


def _decompressed(raw: io.BufferedReader) -> io.BufferedIOBase:
    head = raw.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw  # an uncompressed tar


def _destination(member: tarfile.TarInfo, root: Path, seen: dict[str, bool]) -> Path | None:
    """Where `member` goes below `root` (None: the root itself), or why it may not go anywhere.
    `seen` maps each normalised path written so far to whether it is a folder."""
    name = member.name
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"archive member {name!r} is a link; cloudml refuses links in model archives")
    if not (member.isfile() or member.isdir()) or member.issparse():
        raise UnsafeArchiveError(f"archive member {name!r} is not a regular file or folder")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    destination = (root / name).resolve()
    if destination != root and root not in destination.parents:
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside the target folder")
    if destination == root:
        if member.isdir():
            return None  # "./", as `tar -C folder .` writes
        raise UnsafeArchiveError(f"archive member {name!r} is a file with an empty name")
    parts = destination.relative_to(root).parts
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if seen.setdefault(parent, True) is False:
            raise UnsafeArchiveError(f"archive member {name!r} is below {parent!r}, which the archive holds as a file")
    rel = "/".join(parts)
    if rel in seen and not (seen[rel] and member.isdir()):
        kind = "a folder" if seen[rel] else "a file"
        raise UnsafeArchiveError(f"archive member {name!r} is written twice: the archive already holds {kind} of that name")
    seen[rel] = member.isdir()
    return destination


def extract_archive(archive: Path, target: Path, *, what: object = None, limits: Limits | None = None) -> Path:
    """Extract `archive` into `target`, refusing members that escape it or are links, and
    stopping at the size, ratio and member-count limits (limits.py, from the environment by
    default). Streams: each member is written as it is read. On any failure, whatever was
    written is removed. `what` names the archive in errors (default: its path)."""
    limits = limits or Limits.from_env()
    what = what or archive
    fresh = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    before = set() if fresh else set(target.iterdir())
    try:
        _extract(archive, target.resolve(), what=what, limits=limits)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in set(target.iterdir()) - before:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return target


def _extract(archive: Path, root: Path, *, what: object, limits: Limits) -> None:
    seen: dict[str, bool] = {}
    counted: _CountedStream | None = None
    members = 0
    try:
        with archive.open("rb") as raw, _decompressed(raw) as stream:
            counted = _CountedStream(stream, packed=max(archive.stat().st_size, 1), limits=limits, what=what)
            # Stream mode ("r|") only reads; typeshed asks any fileobj for write, seek and tell too.
            with tarfile.open(fileobj=cast(BinaryIO, counted), mode="r|", bufsize=CHUNK, tarinfo=_EndCheckedInfo) as tar:
                for members, member in enumerate(tar, start=1):
                    limits.check_members(members, what)
                    try:
                        destination = _destination(member, root, seen)
                    except UnsafeArchiveError as exc:
                        raise UnsafeArchiveError(f"{what}: {exc.message}; nothing was unpacked", hint=_REBUILD) from None
                    if destination is None:
                        continue
                    if member.isdir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, destination.open("wb") as out:
                        while chunk := source.read(CHUNK):
                            out.write(chunk)
    except tarfile.TarError as exc:
        if members and counted is not None and counted.exhausted:  # e.g. "unexpected end of data"
            raise _truncated(what, f"in the middle of a member ({exc})") from None
        raise _corrupt(what, exc) from None
    except _Truncated as exc:
        raise _truncated(what, str(exc)) from None
    except _Unreadable as exc:
        raise _corrupt(what, exc) from None


def _truncated(what: object, where: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{what} is truncated: its data ends {where}; nothing was unpacked",
        hint="the file is incomplete: copy, upload or download it again, and compare its size or checksum with the original's",
    )


def _corrupt(what: object, exc: Exception) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{what} is truncated or corrupt, or not a tar archive ({exc}); nothing was unpacked",
        hint=f"check it is complete (`tar tf {what}` lists it without an error), or copy or download it again",
    )
