"""The model contract both packaging and serving speak: the manifest written next to every
packaged model (what it is and how to call it), its signature and tensor specs.

Packaging writes it and serving reads it; neither imports the other. It holds no timestamps or
absolute paths, so packaging the same model twice gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cloudml.errors import ModelError

MANIFEST_NAME = "cloudml-manifest.json"
MANIFEST_FORMAT = 1
SIGNATURE_NAME = "serving_default"


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    dtype: str  # numpy-style name: float32, int64, string, bool
    shape: list[int | None] | None  # None for unknown rank; first dimension is the batch

    @property
    def instance_shape(self) -> list[int | None] | None:
        return None if self.shape is None else self.shape[1:]

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype} of any shape"
        dims = ", ".join("?" if d is None else str(d) for d in self.instance_shape or [])
        return f"{self.dtype}[{dims}] per instance"


class Signature(BaseModel):
    name: str = SIGNATURE_NAME
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


class Manifest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    format: int = MANIFEST_FORMAT
    model_name: str
    model_version: int
    tensorflow_version: str = Field(description="TensorFlow that wrote the SavedModel.")
    source_format: str
    source_name: str
    content_hash: str = Field(description="sha256 of the model the user gave (file or folder).")
    signature: Signature

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_NAME
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{folder} has no {MANIFEST_NAME}; it is not a cloudml package", hint="create one with `cloudml package MODEL`") from None
        except ValueError as exc:
            raise ModelError(f"{path} is not a valid cloudml manifest: {exc}") from None
