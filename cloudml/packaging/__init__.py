"""Packaging: any accepted model -> a versioned SavedModel folder + manifest + model.tar.gz.

Layout written under `out_dir`:

    model/                      the folder Vertex AI and Azure ML take (and `cloudml serve` reads)
      <version>/saved_model.pb
      <version>/variables/...
      cloudml-manifest.json
    model.tar.gz                the same files, for SageMaker's TF Serving containers
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloudml.contract import MANIFEST_NAME, Manifest
from cloudml.errors import ModelError
from cloudml.packaging.archive import extract_archive, write_archive
from cloudml.packaging.hashing import content_hash
from cloudml.packaging.source import ModelSource, inspect_source

__all__ = ["PackagedModel", "package_model", "inspect_source", "source_hash", "Manifest", "ModelSource"]

DEFAULT_VERSION = 1


@dataclass(frozen=True)
class PackagedModel:
    folder: Path
    manifest: Manifest
    archive: Path | None = None

    @property
    def version_dir(self) -> Path:
        return self.folder / str(self.manifest.model_version)


def model_name_from(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name or "model"


def source_hash(source: ModelSource) -> str:
    if source.format == "package":
        return Manifest.read(source.path).content_hash
    return content_hash(source.path)


def _build_folder(source: ModelSource, folder: Path, *, name: str, version: int, digest: str) -> Manifest:
    from cloudml.packaging.savedmodel import copy_saved_model, export_keras, read_signature

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        version_dir = staging / str(version)
        if source.format == "saved_model":
            copy_saved_model(source, version_dir)
        else:
            export_keras(source, version_dir)
        signature, tf_version = read_signature(version_dir)
        manifest = Manifest(
            model_name=name,
            model_version=version,
            tensorflow_version=tf_version,
            source_format=source.format,
            source_name=source.path.name,
            content_hash=digest,
            signature=signature,
        )
        manifest.write(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def package_model(
    model: Path | str | ModelSource,
    out_dir: Path | str,
    *,
    name: str | None = None,
    version: int | None = None,
    archive: bool = True,
) -> PackagedModel:
    """Normalise `model` into `out_dir` (see the module doc); reuses a matching earlier package."""
    source = model if isinstance(model, ModelSource) else inspect_source(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.format == "archive":
        unpacked = out_dir / ".unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)
        extract_archive(source.path, unpacked)
        if not (unpacked / MANIFEST_NAME).is_file():
            # A plain TF Serving tarball: <version>/saved_model.pb at its root.
            return package_model(inspect_source(unpacked), out_dir, name=name or model_name_from(source.path.name.split(".")[0]), version=version, archive=archive)
        source = ModelSource(unpacked, "package")
    if source.format == "package":
        manifest = Manifest.read(source.path)
        folder = source.path
    else:
        name = name or model_name_from(source.display_name)
        version = version or source.version or DEFAULT_VERSION
        digest = content_hash(source.path)
        folder = out_dir / "model"
        manifest = _reusable(folder, name=name, version=version, digest=digest)
        if manifest is None:
            manifest = _build_folder(source, folder, name=name, version=version, digest=digest)
    archive_path = None
    if archive:
        archive_path = out_dir / "model.tar.gz"
        write_archive(folder, archive_path)
    return PackagedModel(folder=folder, manifest=manifest, archive=archive_path)


def _reusable(folder: Path, *, name: str, version: int, digest: str) -> Manifest | None:
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = Manifest.read(folder)
    except ModelError:
        return None
    same = (manifest.content_hash, manifest.model_name, manifest.model_version) == (digest, name, version)
    return manifest if same and (folder / str(version) / "saved_model.pb").is_file() else None
