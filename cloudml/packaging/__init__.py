"""Packaging: any accepted model -> a versioned SavedModel folder + manifest + model.tar.gz.

Layout written under `out_dir`:

    model/                      the folder Vertex AI and Azure ML take (and `cloudml serve` reads)
      <version>/saved_model.pb
      <version>/variables/...
      cloudml-manifest.json
    model.tar.gz                the same files, for SageMaker's TF Serving containers

The model is read once: it is copied into `out_dir` while it is hashed and packaged from that
copy, so what is packaged (and served) is exactly what was hashed, even if the model is replaced
meanwhile. A digest the caller already computed (`source_hash`) is checked against the copy.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cloudml.contract import MANIFEST_NAME, Manifest
from cloudml.errors import ModelError
from cloudml.packaging.archive import extract_archive, write_archive
from cloudml.packaging.hashing import content_hash, copy_hashed
from cloudml.packaging.source import ModelSource, inspect_source

__all__ = ["PackagedModel", "package_model", "inspect_source", "source_hash", "Manifest", "ModelSource"]

DEFAULT_VERSION = 1


@dataclass(frozen=True)
class PackagedModel:
    folder: Path
    manifest: Manifest
    archive: Path | None = None
    archive_digest: str | None = None  # `sha256:<hex>` of `archive`, computed as it was written

    @property
    def version_dir(self) -> Path:
        return self.folder / str(self.manifest.model_version)


def model_name_from(text: str) -> str:
    """The served model's name (TF Serving's /v1/models/NAME) from a file or folder name: as TF
    Serving names a base folder, underscores kept, anything else outside [a-z0-9_] a hyphen."""
    name = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")
    return name or "model"


def source_hash(source: ModelSource) -> str:
    """The content hash a deploy plans with; pass it to `package_model(digest=...)`."""
    if source.format == "package":
        return Manifest.read(source.path).content_hash
    return content_hash(source.path)


def package_model(
    model: Path | str | ModelSource,
    out_dir: Path | str,
    *,
    name: str | None = None,
    version: int | None = None,
    archive: bool = True,
    digest: str | None = None,
) -> PackagedModel:
    """Normalise `model` into `out_dir` (see the module doc); reuses a matching earlier package.

    `digest` is the model's `source_hash` when the caller has it: a matching earlier package is
    then reused without reading the model at all, and a model whose bytes no longer hash to it
    is refused (it changed after it was hashed)."""
    source = model if isinstance(model, ModelSource) else inspect_source(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.format == "package":
        folder, manifest = source.path, Manifest.read(source.path)
        _check_unchanged(source, digest, manifest.content_hash)
    elif source.format == "archive":
        folder, manifest = _from_archive(source, out_dir, name=name, version=version, digest=digest)
    else:
        folder = out_dir / "model"
        manifest = _from_model(source, folder, name=name or model_name_from(source.display_name),
                               version=version or source.version or DEFAULT_VERSION, digest=digest)
    archive_path = archive_digest = None
    if archive:
        archive_path = out_dir / "model.tar.gz"
        archive_digest = write_archive(folder, archive_path)
    return PackagedModel(folder=folder, manifest=manifest, archive=archive_path, archive_digest=archive_digest)


@contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    """A scratch folder next to the result, so the result is put in place by a rename."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_unchanged(source: ModelSource, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise ModelError(
            f"{source.path} changed after cloudml hashed it (it hashed to {expected}, now to {actual})",
            hint="let whatever writes the model finish, then run the command again",
        )


def _from_model(source: ModelSource, folder: Path, *, name: str, version: int, digest: str | None) -> Manifest:
    """A .keras, .h5 or SavedModel source, copied (and hashed) once, packaged into `folder`."""
    from cloudml.packaging.savedmodel import export_keras

    if digest is not None and (reused := _reusable(folder, name=name, version=version, digest=digest)):
        return reused
    with _staging(folder.parent) as staging:
        build = staging / "model"
        version_dir = build / str(version)
        if source.format == "saved_model":
            copied = copy_hashed(source.path, version_dir)
        else:
            copy = staging / "source" / source.path.name  # the name keeps the suffix Keras goes by
            copied = copy_hashed(source.path, copy)
        _check_unchanged(source, digest, copied)
        if digest is None and (reused := _reusable(folder, name=name, version=version, digest=copied)):
            return reused
        if source.format != "saved_model":
            export_keras(source, version_dir, copy=copy)
        return _install(build, folder, name=name, version=version, source=source, digest=copied)


def _from_archive(source: ModelSource, out_dir: Path, *, name: str | None, version: int | None, digest: str | None) -> tuple[Path, Manifest]:
    """A model.tar.gz: a cloudml package as it is, or a plain TF Serving tarball
    (<version>/saved_model.pb at its root) packaged; the content hash is the tarball's."""
    folder = out_dir / "model"
    with _staging(out_dir) as staging:
        copy = staging / "source.tar.gz"
        copied = copy_hashed(source.path, copy)
        _check_unchanged(source, digest, copied)
        unpacked = extract_archive(copy, staging / "unpacked", what=source.path)
        copy.unlink()
        if (unpacked / MANIFEST_NAME).is_file():
            manifest = Manifest.read(unpacked)
            _replace(unpacked, folder)
            return folder, manifest
        try:
            inner = inspect_source(unpacked)
        except ModelError:
            raise ModelError(
                f"{source.path} holds neither a cloudml package nor a SavedModel",
                hint="pass a model.tar.gz written by `cloudml package`, or a TF Serving one (<version>/saved_model.pb at its root)",
            ) from None
        name = name or model_name_from(source.path.name.split(".")[0])
        version = version or inner.version or DEFAULT_VERSION
        if reused := _reusable(folder, name=name, version=version, digest=copied):
            return folder, reused
        build = staging / "model"
        build.mkdir()
        inner.path.rename(build / str(version))
        return folder, _install(build, folder, name=name, version=version, source=source, digest=copied)


def _install(build: Path, folder: Path, *, name: str, version: int, source: ModelSource, digest: str) -> Manifest:
    """Write the manifest of the SavedModel in `build/<version>` and put `build` at `folder`."""
    from cloudml.packaging.savedmodel import read_signature

    signature, tf_version = read_signature(build / str(version))
    manifest = Manifest(
        model_name=name,
        model_version=version,
        tensorflow_version=tf_version,
        source_format=source.format,
        source_name=source.path.name,
        content_hash=digest,
        signature=signature,
    )
    manifest.write(build)
    _replace(build, folder)
    return manifest


def _replace(new: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    new.rename(folder)


def _reusable(folder: Path, *, name: str, version: int, digest: str) -> Manifest | None:
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = Manifest.read(folder)
    except ModelError:
        return None
    same = (manifest.content_hash, manifest.model_name, manifest.model_version) == (digest, name, version)
    return manifest if same and (folder / str(version) / "saved_model.pb").is_file() else None
