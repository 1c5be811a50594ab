"""The local provider's record of what it deployed: one SQLite file under $CLOUDML_HOME.

Only the facts needed to find a deployment again live here; whether it is healthy is always
checked live, never stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
)
"""


@dataclass
class LocalRecord:
    name: str
    host: str
    port: int
    pid: int
    fingerprint: str  # model hash + settings that need a restart when they change
    model_hash: str
    model_version: int
    model_path: str
    folder: str  # this revision's package, log and socket
    created_at: str
    updated_at: str
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return Path(self.folder) / "server.log"

    @property
    def socket_path(self) -> Path:
        path = Path(self.folder) / "health.sock"
        if len(str(path)) < 100:
            return path
        # Unix socket paths are limited to ~104 bytes; deep $CLOUDML_HOME folders need a short one.
        digest = hashlib.sha256(self.folder.encode()).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"cloudml-{os.getuid()}" / f"{digest}.sock"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def timestamps(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.created_at), datetime.fromisoformat(self.updated_at)


class StateStore:
    def __init__(self, home: Path):
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = home / "state.db"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute(SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    def get(self, name: str) -> LocalRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT record FROM deployments WHERE name = ?", (name,)).fetchone()
        return LocalRecord(**json.loads(row[0])) if row else None

    def all(self) -> list[LocalRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT record FROM deployments ORDER BY name").fetchall()
        return [LocalRecord(**json.loads(r[0])) for r in rows]

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
    def lock(self, name: str) -> Iterator[None]:
        """Serialise deploys and deletes of one name across processes."""
        locks = self.home / "locks"
        locks.mkdir(exist_ok=True)
        with (locks / f"{name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
