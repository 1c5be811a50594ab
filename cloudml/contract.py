"""The model contract both packaging and serving speak: the manifest written next to every
packaged model (what it is and how to call it), its signature and tensor specs.

Packaging writes it and serving reads it; neither imports the other. It holds no timestamps or
absolute paths, so packaging the same model twice gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

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


Backend = Literal["tensorflow", "onnx"]
Framework = Literal["tensorflow", "pytorch", "onnx"]
RuntimeChoice = Literal["auto", "onnx", "tensorflow"]
ONNX_FILE = "model.onnx"


class Tolerance(BaseModel):
    """How close the ONNX model's outputs must be to the original's: |onnx - original| <= atol + rtol * |original|, elementwise."""

    model_config = ConfigDict(frozen=True)

    atol: float
    rtol: float


class Verification(BaseModel):
    """What comparing the converted model with its original on probe inputs found."""

    passed: bool
    probes: int = Field(description="Probe batches compared (inputs built from the signature, plus the user's sample when given).")
    max_abs_diff: float
    max_rel_diff: float
    worst_output: str | None = None
    used_sample: bool = False


class OnnxGraph(BaseModel):
    """The served ONNX file and how its tensors are named against the signature."""

    file: str = ONNX_FILE  # relative to the version folder
    opset: int
    producer: str  # e.g. "tf2onnx 1.17.0", "pytorch 2.13.0"
    inputs: dict[str, str]  # signature input name -> ONNX graph input name
    outputs: dict[str, str]  # signature output name -> ONNX graph output name
    # Signature input name -> [low, high): the values an integer input indexing a table may hold,
    # as the original framework takes them (ONNX's Gather would also take what it refuses).
    # Packages written before it have none.
    index_ranges: dict[str, tuple[int, int]] = Field(default_factory=dict)


class Runtime(BaseModel):
    """Which backend serves the package, what the model came from, and why."""

    backend: Backend = "tensorflow"
    framework: Framework = "tensorflow"
    framework_version: str | None = None  # the TensorFlow that wrote the SavedModel, the torch that exported, the ONNX producer's
    requested: RuntimeChoice = "auto"
    original: str | None = Field(default=None, description="The framework's own model, relative to the version folder, kept so a fallback needs no re-upload.")
    onnx: OnnxGraph | None = None
    tolerance: Tolerance | None = None
    verification: Verification | None = None
    fallback_reason: str | None = Field(default=None, description="Why the model is not served by ONNX Runtime, when it could have been.")


class Manifest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    format: int = MANIFEST_FORMAT
    model_name: str
    model_version: int
    tensorflow_version: str | None = Field(default=None, description="TensorFlow that wrote the SavedModel (None for PyTorch and ONNX models).")
    source_format: str
    source_name: str
    content_hash: str = Field(description="sha256 of the model the user gave (file or folder).")
    signature: Signature
    # Packages written before runtime backends existed hold a SavedModel served by TensorFlow.
    runtime: Runtime = Field(default_factory=Runtime)

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
