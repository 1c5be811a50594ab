"""Count how often any process opens each file of a folder, with Linux inotify (IN_OPEN).

inotify sees every process on the machine, detached servers included, and costs them nothing,
so a test can ask "how many times did this deploy read the model?" of the real CLI.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections import Counter
from pathlib import Path

IN_OPEN = 0x00000020
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len: struct inotify_event before its name


class FileOpens:
    """`with FileOpens(folder) as opens: ...` then `opens.counts()`: {path: times opened}."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = -1
        self._dirs: dict[int, Path] = {}
        self._counts: Counter[Path] = Counter()

    def __enter__(self) -> FileOpens:
        self._fd = self._libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for folder in [self.folder, *(p for p in self.folder.rglob("*") if p.is_dir())]:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            self._dirs[wd] = folder
        return self

    def __exit__(self, *exc: object) -> None:
        self._drain()
        os.close(self._fd)
        self._fd = -1

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size: offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                if mask & IN_OPEN and not mask & IN_ISDIR and name:
                    self._counts[self._dirs[wd] / os.fsdecode(name)] += 1

    def counts(self) -> Counter[Path]:
        if self._fd >= 0:
            self._drain()
        return Counter(self._counts)
