"""Packaging: any accepted model -> a versioned model folder + manifest + model.tar.gz.

Layout written under `out_dir`:

    model/                      the folder Vertex AI and Azure ML take (and `cloudml serve` reads)
      <version>/saved_model.pb  a Keras/TensorFlow model's SavedModel (what TF Serving images load)
      <version>/variables/...
      <version>/model.onnx      the ONNX model ONNX Runtime serves, when it verified (conversion/)
      <version>/model.pt2       a PyTorch model's original, next to its ONNX export
      cloudml-manifest.json     signature, runtime backend, how the conversion was verified
    model.tar.gz                the same files, for SageMaker

The runtime (`runtime=`): "auto" serves a Keras/TensorFlow model by ONNX Runtime when its
conversion verifies and by TensorFlow otherwise (the reason is in the manifest); "onnx" insists
(a conversion that does not verify is an error); "tensorflow" does not convert. PyTorch and ONNX
models are always served by ONNX Runtime.

The model is read once: it is copied into `out_dir` while it is hashed and packaged from that
copy, so what is packaged (and served) is exactly what was hashed, even if the model is replaced
meanwhile. A deploy, which needs the digest before it packages, makes that copy first
(`snapshot.snapshot_model`) and hands it over (`snapshot=`): packaging moves it in place instead.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cloudml.contract import MANIFEST_NAME, ONNX_FILE, Manifest, Runtime, RuntimeChoice
from cloudml.errors import ModelError
from cloudml.packaging.archive import extract_archive, write_archive
from cloudml.packaging.hashing import content_hash, copy_hashed
from cloudml.packaging.snapshot import copy_of
from cloudml.packaging.source import FRAMEWORKS, ModelSource, inspect_source

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
    runtime: RuntimeChoice = "auto",
    sample: list | None = None,
    snapshot: Path | None = None,
) -> PackagedModel:
    """Normalise `model` into `out_dir` (see the module doc); reuses a matching earlier package.

    `digest` is the model's `source_hash` when the caller has it: a matching earlier package is
    then reused without reading the model at all, and a model whose bytes no longer hash to it
    is refused (it changed after it was hashed). `sample` is the instances of a request (the
    `instances` list of a sample file): the conversion is verified on them too, and a
    TorchScript model, which records no input shapes, takes its shapes from them.

    `snapshot` is the copy of `model` that `snapshot_model` made, hashing to `digest`: it is
    moved into the package (or dropped when an earlier package is reused) and `model` is not
    read at all; messages and the manifest still name `model`."""
    taken = None
    if snapshot is not None:
        if digest is None:
            raise ValueError("a snapshot is packaged with the digest it was copied with")
        source = copy_of(model.path if isinstance(model, ModelSource) else model, snapshot)
        taken = _Taken(snapshot, digest)
    else:
        source = model if isinstance(model, ModelSource) else inspect_source(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    choice = _Choice(runtime, sample)
    if source.format == "package":
        folder, manifest = source.path, Manifest.read(source.path)
        _check_unchanged(source, digest, manifest.content_hash)
        _check_served_as(source, manifest, runtime)
    elif source.format == "archive":
        folder, manifest = _from_archive(source, out_dir, name=name, version=version, digest=digest, choice=choice, taken=taken)
    else:
        if runtime == "tensorflow" and FRAMEWORKS[source.format] != "tensorflow":
            raise ModelError(f"{source.path} is a {FRAMEWORKS[source.format]} model; TensorFlow cannot serve it",
                             hint="leave --runtime at auto (or onnx): PyTorch and ONNX models are served by ONNX Runtime")
        folder = out_dir / "model"
        manifest = _from_model(source, folder, name=name or model_name_from(source.display_name),
                               version=version or source.version or DEFAULT_VERSION, digest=digest, choice=choice, taken=taken)
    archive_path = archive_digest = None
    if archive:
        archive_path = out_dir / "model.tar.gz"
        archive_digest = write_archive(folder, archive_path)
    return PackagedModel(folder=folder, manifest=manifest, archive=archive_path, archive_digest=archive_digest)


@dataclass(frozen=True)
class _Taken:
    """A snapshot packaging may move: its bytes are the model's as they were hashed to `digest`."""

    path: Path
    digest: str

    def move_to(self, target: Path) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.path, target)  # a rename: the snapshot sits on the package's file system
        return self.digest


@dataclass(frozen=True)
class _Choice:
    """What the caller asked of the runtime; part of what makes an earlier package reusable."""

    runtime: RuntimeChoice
    sample: list | None

    def matches(self, earlier: Runtime) -> bool:
        verified_on_sample = earlier.verification is not None and earlier.verification.used_sample
        return earlier.requested == self.runtime and (self.sample is None or verified_on_sample or earlier.backend != "onnx" or earlier.framework == "onnx")


def _check_served_as(source: ModelSource, manifest: Manifest, runtime: RuntimeChoice) -> None:
    """A package is served as it was packaged; asking for another backend is asking to package again."""
    if runtime != "auto" and manifest.runtime.backend != runtime:
        raise ModelError(f"{source.path} was packaged to be served by {manifest.runtime.backend}, not {runtime}",
                         hint=f"package the original model again with --runtime {runtime}")


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


def _from_model(source: ModelSource, folder: Path, *, name: str, version: int, digest: str | None, choice: _Choice,
                taken: _Taken | None) -> Manifest:
    """A model file or SavedModel folder, copied (and hashed) once, packaged into `folder`."""
    if digest is not None and (reused := _reusable(folder, name=name, version=version, digest=digest, choice=choice)):
        return reused
    with _staging(folder.parent) as staging:
        build = staging / "model"
        version_dir = build / str(version)
        if source.format == "saved_model":
            copy = version_dir
        elif source.format in ("pt2", "torchscript", "onnx"):
            # The original stays in the package, next to what is served.
            copy = version_dir / (ONNX_FILE if source.format == "onnx" else f"model{source.path.suffix.lower()}")
        else:
            copy = staging / "source" / source.path.name  # the name keeps the suffix Keras goes by
        copied = taken.move_to(copy) if taken else copy_hashed(source.path, copy)
        _check_unchanged(source, digest, copied)
        if digest is None and (reused := _reusable(folder, name=name, version=version, digest=copied, choice=choice)):
            return reused
        if FRAMEWORKS[source.format] != "tensorflow":
            return _install_onnx(build, folder, copy, name=name, version=version, source=source, digest=copied, choice=choice)
        if source.format != "saved_model":
            from cloudml.packaging.savedmodel import export_keras

            export_keras(source, version_dir, copy=copy)
        return _install(build, folder, name=name, version=version, source=source, digest=copied, choice=choice)


def _from_archive(source: ModelSource, out_dir: Path, *, name: str | None, version: int | None, digest: str | None,
                  choice: _Choice, taken: _Taken | None) -> tuple[Path, Manifest]:
    """A model.tar.gz: a cloudml package as it is, or a plain TF Serving tarball
    (<version>/saved_model.pb at its root) packaged; the content hash is the tarball's."""
    folder = out_dir / "model"
    with _staging(out_dir) as staging:
        copy = staging / "source.tar.gz"
        copied = taken.move_to(copy) if taken else copy_hashed(source.path, copy)
        _check_unchanged(source, digest, copied)
        unpacked = extract_archive(copy, staging / "unpacked", what=source.path)
        copy.unlink()
        if (unpacked / MANIFEST_NAME).is_file():
            manifest = Manifest.read(unpacked)
            _check_served_as(source, manifest, choice.runtime)
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
        if reused := _reusable(folder, name=name, version=version, digest=copied, choice=choice):
            return folder, reused
        build = staging / "model"
        build.mkdir()
        inner.path.rename(build / str(version))
        return folder, _install(build, folder, name=name, version=version, source=source, digest=copied, choice=choice)


def _install(build: Path, folder: Path, *, name: str, version: int, source: ModelSource, digest: str, choice: _Choice) -> Manifest:
    """Write the manifest of the SavedModel in `build/<version>` (converted to ONNX when it
    verifies, see the module doc) and put `build` at `folder`."""
    from cloudml.packaging.conversion import choose_tensorflow_runtime
    from cloudml.packaging.savedmodel import read_signature

    version_dir = build / str(version)
    signature, tf_version = read_signature(version_dir)
    runtime = choose_tensorflow_runtime(version_dir, signature, requested=choice.runtime, tensorflow_version=tf_version, sample=choice.sample)
    manifest = Manifest(
        model_name=name,
        model_version=version,
        tensorflow_version=tf_version,
        source_format=source.format,
        source_name=source.path.name,
        content_hash=digest,
        signature=signature,
        runtime=runtime,
    )
    manifest.write(build)
    _replace(build, folder)
    return manifest


def _install_onnx(build: Path, folder: Path, original: Path, *, name: str, version: int, source: ModelSource, digest: str,
                  choice: _Choice) -> Manifest:
    """A PyTorch program exported to ONNX (and verified against torch), or an ONNX file as it
    is, with its manifest, put at `folder`."""
    if source.format == "onnx":
        from cloudml.packaging.conversion.onnxfile import inspect_onnx

        signature, graph = inspect_onnx(original, sample=choice.sample)
        runtime = Runtime(backend="onnx", framework="onnx", framework_version=graph.producer, requested=choice.runtime, original=original.name, onnx=graph)
    else:
        from cloudml.packaging.conversion.torch import export_torch

        assert source.format in ("pt2", "torchscript")  # the frameworks ONNX Runtime serves: pytorch, onnx
        exported = export_torch(original, source.format, original.parent, sample=choice.sample, what=source.path)
        signature = exported.signature
        runtime = Runtime(backend="onnx", framework="pytorch", framework_version=exported.torch_version, requested=choice.runtime,
                          original=original.name, onnx=exported.onnx, tolerance=exported.tolerance, verification=exported.verification)
    manifest = Manifest(model_name=name, model_version=version, source_format=source.format, source_name=source.path.name,
                        content_hash=digest, signature=signature, runtime=runtime)
    manifest.write(build)
    _replace(build, folder)
    return manifest


def _replace(new: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    new.rename(folder)


def _reusable(folder: Path, *, name: str, version: int, digest: str, choice: _Choice) -> Manifest | None:
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = Manifest.read(folder)
    except ModelError:
        return None
    same = (manifest.content_hash, manifest.model_name, manifest.model_version) == (digest, name, version) and choice.matches(manifest.runtime)
    graph = manifest.runtime.onnx
    served = folder / str(version) / (graph.file if manifest.runtime.backend == "onnx" and graph else "saved_model.pb")
    return manifest if same and served.is_file() else None
