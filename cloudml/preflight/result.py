"""The result file the preflight child writes for its parent: what was packaged, or the error.

A typed file at a path the parent chose, instead of a line on stdout that anything the child
loads (TensorFlow, a model's own code) could print over. Errors cross by name through an explicit
table, so only errors the parent knows are rebuilt as themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from cloudml.contract import Manifest
from cloudml.errors import CloudMLError, ConfigError, ModelError, UnsafeArchiveError

# The errors the child may raise, by the name the result file carries.
ERRORS: dict[str, type[CloudMLError]] = {
    "ModelError": ModelError,
    "UnsafeArchiveError": UnsafeArchiveError,
    "ConfigError": ConfigError,
}


class Packaged(BaseModel):
    status: Literal["packaged"] = "packaged"
    folder: Path
    archive: Path | None = None  # None when asked for no archive (a local server reads the folder)
    archive_digest: str | None = None
    manifest: Manifest


class Failed(BaseModel):
    status: Literal["failed"] = "failed"
    kind: str  # a key of ERRORS, unless the child raised an error the table lacks
    message: str
    hint: str | None = None
    details: str | None = None

    @classmethod
    def from_error(cls, exc: CloudMLError) -> Failed:
        # The most specific class the table knows: a ModelError subclass still arrives as a ModelError.
        known = {cls_: name for name, cls_ in ERRORS.items()}
        kind = next((known[c] for c in type(exc).__mro__ if c in known), type(exc).__name__)
        return cls(kind=kind, message=exc.message, hint=exc.hint, details=exc.details)

    def error(self) -> CloudMLError | None:
        """The error as raised in the child, or None when the table has no such kind."""
        cls = ERRORS.get(self.kind)
        return cls(self.message, hint=self.hint, details=self.details) if cls else None


Result = Annotated[Packaged | Failed, Field(discriminator="status")]
_ADAPTER: TypeAdapter[Packaged | Failed] = TypeAdapter(Result)


def write_result(path: Path, result: Packaged | Failed) -> None:
    """Write atomically: the parent sees a whole result or none."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(result.model_dump_json(indent=2))
    os.replace(tmp, path)


def read_result(path: Path) -> Packaged | Failed | None:
    """The child's result, or None when it wrote none or one that does not validate."""
    try:
        return _ADAPTER.validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
