"""Recognise what a user points cloudml at, without importing TensorFlow."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cloudml.contract import MANIFEST_NAME
from cloudml.errors import ModelError

SourceFormat = Literal["keras", "h5", "saved_model", "pt2", "torchscript", "onnx", "package", "archive"]
# What each format is exported from: PyTorch and ONNX models are served by ONNX Runtime only.
FRAMEWORKS = {"keras": "tensorflow", "h5": "tensorflow", "saved_model": "tensorflow", "pt2": "pytorch", "torchscript": "pytorch", "onnx": "onnx"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class ModelSource:
    path: Path  # the file or folder whose content defines the model
    format: SourceFormat
    version: int | None = None  # the numeric version folder, when the source has one

    @property
    def display_name(self) -> str:
        if self.format == "saved_model" and self.path.name.isdigit():
            return self.path.parent.name  # a TF Serving base folder: <name>/<version>/saved_model.pb
        return self.path.stem if self.path.is_file() else self.path.name


def _numeric_versions(folder: Path) -> list[int]:
    return sorted(
        int(child.name)
        for child in folder.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / "saved_model.pb").is_file()
    )


def inspect_source(path: Path | str) -> ModelSource:
    """Classify a model path, or explain exactly what cloudml accepts."""
    path = Path(path).expanduser()
    accepted = ("a .keras file, a legacy .h5 file, a SavedModel folder (optionally with a numeric version subfolder), a torch.export .pt2 file, "
                "a TorchScript .pt file, an .onnx file or a cloudml package")
    if not path.exists():
        raise ModelError(f"model path {path} does not exist", hint=f"pass {accepted}")
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return ModelSource(path, "package")
        if (path / "model" / MANIFEST_NAME).is_file():
            return ModelSource(path / "model", "package")  # the folder `cloudml package` writes
        if (path / "saved_model.pb").is_file():
            version = int(path.name) if path.name.isdigit() else None
            return ModelSource(path, "saved_model", version)
        versions = _numeric_versions(path)
        if versions:
            # Like TF Serving: the highest version is the one served.
            return ModelSource(path / str(versions[-1]), "saved_model", versions[-1])
        raise ModelError(
            f"{path} is a folder but holds no saved_model.pb (neither at its top nor in a numeric version folder)",
            hint=f"pass {accepted}; export a Keras model with model.export('{path}/1')",
        )
    name = path.name.lower()
    with path.open("rb") as handle:
        head = handle.read(8)
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a valid .keras file (it is not a zip archive)", hint="re-save it with model.save('model.keras')")
        return ModelSource(path, "keras")
    if name.endswith((".h5", ".hdf5")):
        if head != _HDF5_MAGIC:
            raise ModelError(f"{path} is not a valid HDF5 file", hint="re-save it with model.save('model.h5')")
        return ModelSource(path, "h5")
    if name.endswith(".pt2"):
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a valid .pt2 file (it is not a zip archive)",
                             hint="save the program with torch.export.save(torch.export.export(model, args), 'model.pt2')")
        return ModelSource(path, "pt2")
    if name.endswith((".pt", ".pth", ".torchscript")):
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a TorchScript file (it is not a zip archive)", hint="save the model with torch.jit.script(model).save('model.pt')")
        return ModelSource(path, "torchscript")
    if name.endswith(".onnx"):
        return ModelSource(path, "onnx")
    if name.endswith((".tar.gz", ".tgz")):
        return ModelSource(path, "archive")
    raise ModelError(f"cannot tell what kind of model {path} is", hint=f"pass {accepted}")
