"""The local provider's record of what it deployed: one SQLite file under $CLOUDML_HOME.

Only the facts needed to find a deployment again live here; whether it is healthy is always
checked live, never stored. A server is recorded (as `pending`) before it starts and stays
recorded until it has stopped, so whatever a killed deploy left running is found again.
$CLOUDML_HOME is private to the user (0700, state file 0600): it holds the --env values.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cloudml.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
)
"""

# Unix socket paths are limited to ~104 bytes.
_MAX_SOCKET_PATH = 100


class StateError(ConfigError):
    """The state under $CLOUDML_HOME cannot be read or written (exit code 2)."""


@dataclass
class Server:
    """One `cloudml serve` process of a deployment: a revision's package, log and sockets."""

    pid: int
    folder: str  # this revision's package and log
    run_dir: str  # its health and handoff sockets (the folder itself unless its path is too long)
    package: str = ""  # the package folder it serves (a cloudml package is served where it is)

    @classmethod
    def new(cls, folder: Path, package: Path) -> Server:
        run_dir = folder
        if len(str(folder / "handoff.sock")) >= _MAX_SOCKET_PATH:
            # A private folder with an unpredictable name; removed with the revision.
            run_dir = Path(tempfile.mkdtemp(prefix="cloudml-"))
        return cls(pid=0, folder=str(folder), run_dir=str(run_dir), package=str(package))

    @property
    def log_path(self) -> Path:
        return Path(self.folder) / "server.log"

    @property
    def socket_path(self) -> Path:
        return Path(self.run_dir) / "health.sock"

    @property
    def handoff_path(self) -> Path:
        return Path(self.run_dir) / "handoff.sock"

    def remove_files(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.run_dir != self.folder:
            shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclass
class LocalRecord:
    name: str
    host: str
    port: int
    fingerprint: str  # model hash + settings that need a restart when they change
    model_hash: str
    model_version: int
    model_path: str
    created_at: str
    updated_at: str
    server: Server | None = None  # the one serving; None until a first deploy gets healthy
    pending: Server | None = None  # started by a deploy, not yet serving in its place
    retired: list[Server] = field(default_factory=list)  # replaced, being drained and stopped
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> LocalRecord:
        data: dict[str, Any] = json.loads(text)
        if "folder" in data:  # written before servers were recorded apart from the deployment
            folder, pid = data.pop("folder"), data.pop("pid")
            data["server"] = {"pid": pid, "folder": folder, "run_dir": folder, "package": str(Path(folder) / "package" / "model")}
        for key in ("server", "pending"):
            data[key] = Server(**data[key]) if data.get(key) else None
        data["retired"] = [Server(**s) for s in data.get("retired") or []]
        return cls(**data)

    @property
    def pid(self) -> int:
        return self.server.pid if self.server else 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def timestamps(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.created_at), datetime.fromisoformat(self.updated_at)


def _fault(exc: BaseException, path: Path) -> StateError:
    """A clear error for a state file or folder that cannot be used."""
    text = str(exc)
    home = path if path.suffix != ".db" else path.parent
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or getattr(exc, "errno", None) == errno.ENOTDIR:
        return StateError(f"the local provider's home {home} is not a folder", hint="set CLOUDML_HOME to a folder (or -o home=...), or move that file away")
    if "locked" in text:
        return StateError(f"the local deployment state {path} is locked by another process",
                          hint="wait for the other cloudml command to finish and run this one again")
    if "full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        return StateError(f"no space left to write the local deployment state under {home}", hint="free some disk space there, then run the command again")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return StateError(f"the local deployment state {path} is corrupt ({text})",
                          hint=f"move it away (mv {path} {path}.bad) and redeploy; servers it recorded must be stopped by hand (pgrep -f {home})")
    return StateError(f"cannot use the local deployment state {path}: {text}", hint=f"check that {home} is a folder you can read and write")


class StateStore:
    def __init__(self, home: Path, *, timeout: float = 10.0):
        self.home = home
        self.path = home / "state.db"
        self.timeout = timeout
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.home.is_dir():
                raise NotADirectoryError(str(self.home))
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise _fault(exc, self.home) from None
        for path, private in ((self.home, 0o700), (self.path, 0o600)):
            with contextlib.suppress(OSError):  # not ours to change (a shared folder): leave it
                if stat.S_IMODE(path.stat().st_mode) & 0o077:
                    path.chmod(private)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout)
            try:
                conn.execute(SCHEMA)
                with conn:
                    yield conn
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise _fault(exc, self.path) from None

    def _parse(self, name: str, text: str) -> LocalRecord:
        try:
            return LocalRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise StateError(f"the local state's record of {name!r} is unreadable ({exc})",
                             hint=f"delete it with `cloudml delete {name}`; a server it recorded must be stopped by hand (pgrep -f {self.home})") from None

    def get(self, name: str) -> LocalRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT record FROM deployments WHERE name = ?", (name,)).fetchone()
        return self._parse(name, row[0]) if row else None

    def all(self) -> list[LocalRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT name, record FROM deployments ORDER BY name").fetchall()
        return [self._parse(name, text) for name, text in rows]

    def put(self, record: LocalRecord) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO deployments(name, record) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET record = excluded.record",
                (record.name, json.dumps(asdict(record))),
            )

    def remove(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM deployments WHERE name = ?", (name,))

    @contextlib.contextmanager
    def lock(self, name: str, *, wait: bool = True) -> Iterator[bool]:
        """Serialise deploys and deletes of one name across processes. Yields whether it holds
        the lock (only False with wait=False while another command holds it). A command that
        dies releases it: a free lock with a pending server means its deploy is gone."""
        locks = self.home / "locks"
        try:
            locks.mkdir(exist_ok=True, mode=0o700)
            handle = (locks / f"{name}.lock").open("w")
        except OSError as exc:
            raise _fault(exc, self.home) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
