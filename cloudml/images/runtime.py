"""The serving runtime image: one image per runtime backend, not per model.

Every cloud hands the model to the container (SageMaker unpacks it into /opt/ml/model, Vertex AI
gives AIP_STORAGE_URI, Azure ML mounts AZUREML_MODEL_DIR), so the image holds no model: the base
(python:3.11-slim or a mirror of it), a dependency layer (the backend, ONNX Runtime or the
TensorFlow that saved the model, and exactly what the serving runtime imports, as linux/amd64
CPython 3.11 wheels), and a runtime layer (cloudml's serving code, nothing else of cloudml).

The tag names what is in the image: cloudml's version, the backend and its version, cpu, and a
short key over everything else that decides the bytes (the pinned requirements, the runtime
layer's digest, the base's digest). A deploy derives the tag before building anything; when the
registry has it, nothing is built or pushed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cloudml
from cloudml import __version__
from cloudml.errors import ConfigError
from cloudml.images import wheels
from cloudml.images.builder import BuildResult, build, exists, runtime_tag, version_labels
from cloudml.images.errors import ImageNotFound
from cloudml.images.layers import PYTHON_JUNK, Entry, Layer, build_layer, entries_from_tree
from cloudml.images.oci import ImageSettings
from cloudml.images.registry import Credentials, Reference, RegistryClient
from cloudml.progress import SILENT, Progress

DEFAULT_BASE = "python:3.11-slim"
APP_DIR = "opt/cloudml/app"
PORT = 8080
USER = "10001"
# The distribution each backend serves with, and the name its tag and labels use.
BACKENDS = {"onnx": ("onnxruntime", "onnxruntime"), "tensorflow": ("tensorflow-cpu", "tensorflow")}
# What `python -m cloudml.serving.entrypoint` imports beside the backend (checked by the tests
# against the entrypoint's import graph): uvicorn runs with httptools, its C HTTP parser.
SERVING_PACKAGES = ("numpy", "orjson", "pydantic", "starlette", "uvicorn", "httptools")
# Vertex AI gives a custom container its model as AIP_STORAGE_URI (gs://); the entrypoint fetches it.
STORAGE_PACKAGES = ("google-cloud-storage",)
# The parts of cloudml the serving runtime is made of (relative to the cloudml package).
RUNTIME_MODULES = ("__init__.py", "errors.py", "contract.py", "backends", "serving")
ENTRYPOINT = ["python3", "-m", "cloudml.serving.entrypoint"]


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_version(backend: str) -> str:
    """The backend version this cloudml serves with when the model names none (ONNX Runtime: the
    one installed here, which packaging verified the model with)."""
    dist = _backend(backend)[0]
    version = _installed(dist) or (_installed("tensorflow") if backend == "tensorflow" else None)
    if not version:
        raise ConfigError(f"no {backend} version was given and {dist} is not installed here",
                          hint=f"give backend_version (the {dist} version the image should serve with)")
    return version


def _backend(backend: str) -> tuple[str, str]:
    if backend not in BACKENDS:
        raise ConfigError(f"no runtime image serves the backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    return BACKENDS[backend]


def requirements(backend: str, version: str, *, cloud_storage: bool = True) -> list[str]:
    """What the dependency layer installs: the backend at `version` and the serving runtime's
    packages at the versions installed with this cloudml (the ones its tests ran with).

    numpy is left to TensorFlow's own pin in a TensorFlow image: an older TensorFlow needs an older numpy."""
    dist = _backend(backend)[0]
    packages = SERVING_PACKAGES + (STORAGE_PACKAGES if cloud_storage else ())
    out = [f"{dist}=={version}"]
    for name in packages:
        pinned = _installed(name)
        out.append(name if pinned is None or (backend == "tensorflow" and name == "numpy") else f"{name}=={pinned}")
    return out


def runtime_layer(blob_dir: Path) -> Layer:
    """cloudml's serving code (RUNTIME_MODULES) at /opt/cloudml/app/cloudml, without bytecode."""
    package = Path(cloudml.__file__).parent
    entries: list[Entry] = []
    for name in RUNTIME_MODULES:
        path = package / name
        if path.is_dir():
            entries += entries_from_tree(path, f"{APP_DIR}/cloudml/{name}", exclude=PYTHON_JUNK)
        else:
            entries.append(Entry(f"{APP_DIR}/cloudml/{name}", source=path))
    return build_layer(entries, blob_dir, comment=f"cloudml {__version__} serving runtime")


def settings(backend: str, version: str, pins: Sequence[str]) -> ImageSettings:
    dist, runtime = _backend(backend)
    labels = version_labels(runtime, version, "tensorflow" if backend == "tensorflow" else None, version if backend == "tensorflow" else None)
    labels |= {"io.cloudml.backend": backend, "io.cloudml.python": wheels.PYTHON_VERSION, "io.cloudml.requirements": " ".join(pins)}
    return ImageSettings(
        entrypoint=list(ENTRYPOINT),
        env={
            "PYTHONPATH": f"/{APP_DIR}:/{wheels.SITE_PACKAGES}",
            "PYTHONUNBUFFERED": "1",
            # The image's folders are root's: uid 10001 could not write bytecode there anyway.
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        exposed_ports=(PORT,),
        labels=labels,
        user=USER,
    )


@dataclass(frozen=True)
class RuntimeImage:
    reference: str  # repository:tag@sha256:...
    tag: str
    repository: str  # HOST/REPOSITORY
    digest: str
    requirements: tuple[str, ...]
    built: bool  # False: the registry had the tag, nothing was built or pushed
    result: BuildResult | None = None

    @property
    def pinned(self) -> str:
        """repository@sha256:... (what engines and clouds take; some refuse a tag and a digest together)."""
        return f"{self.repository}@{self.digest}"

    @property
    def bytes_uploaded(self) -> int:
        return self.result.bytes_uploaded if self.result else 0


def _pinned_base(base: Reference, credentials: Credentials | None, plain_http: bool | None) -> str:
    if base.digest:
        return base.digest
    found = RegistryClient(base.registry, credentials=credentials, plain_http=plain_http).head_manifest(base.repository, base.reference)
    if not found:
        raise ImageNotFound(f"the base image {base} cannot be pulled: the registry has no such tag",
                            hint="check base_image (repository and tag) and that the registry holds it; a mirror can be given as base_image")
    return found


def image_key(pins: Sequence[str], runtime_diff_id: str, base: str, *, python_version: str, platforms: Sequence[str]) -> str:
    """12 hex digits over what decides the image's bytes beyond the tag's readable part (`base`:
    the base's name and digest, both of which the image's labels record)."""
    doc = {"requirements": sorted(pins), "runtime": runtime_diff_id, "base": base, "python": python_version, "platforms": list(platforms)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def runtime_image(
    backend: str,
    *,
    target_repository: str,
    backend_version: str | None = None,
    base: str = DEFAULT_BASE,
    cloud_storage: bool = True,
    base_credentials: Credentials | None = None,
    target_credentials: Credentials | None = None,
    plain_http: bool | None = None,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    no_index: bool = False,
    work_dir: Path | None = None,
    progress: Progress = SILENT,
) -> RuntimeImage:
    """The runtime image for `backend` ("onnx" or "tensorflow") at `backend_version` (default: see
    default_version) in `target_repository` (HOST/REPO, no tag): found by its tag, or built on
    `base` and pushed. Wheels come from the index (`index_url`) or a wheelhouse (`find_links`,
    with `no_index` for offline builds)."""
    version = backend_version or default_version(backend)
    repo = Reference.parse(target_repository)
    if repo.tag or repo.digest:
        raise ConfigError(f"the target repository {target_repository!r} names a tag or digest", hint="give HOST/REPOSITORY; the tag names the contents")
    base_ref = Reference.parse(base)
    pins = requirements(backend, version, cloud_storage=cloud_storage)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="cloudml-runtime-") as tmp:
        blobs = Path(tmp) / "blobs"
        app = runtime_layer(blobs)
        base_digest = _pinned_base(base_ref, base_credentials, plain_http)
        pinned = replace(base_ref, digest=base_digest)
        key = image_key(pins, app.diff_id, str(pinned), python_version=wheels.PYTHON_VERSION, platforms=wheels.PLATFORMS)
        tag = runtime_tag(__version__, _backend(backend)[1], version, "cpu", key)
        target = replace(repo, tag=tag)
        found = exists(target, credentials=target_credentials, plain_http=plain_http)
        if found:
            progress.note(f"runtime image {target} is in the registry: nothing to build or push")
            return RuntimeImage(str(target.with_digest(found)), tag, target_repository, found, tuple(pins), built=False)
        with progress.step(f"Installing {len(pins)} requirements for linux/amd64 (Python {wheels.PYTHON_VERSION})"):
            deps = wheels.dependency_layer(pins, blobs, index_url=index_url, find_links=find_links, no_index=no_index)
        result = build(pinned, [deps, app], settings(backend, version, pins), target,
                       base_credentials=base_credentials, target_credentials=target_credentials, plain_http=plain_http,
                       work_dir=work_dir, progress=progress)
        return RuntimeImage(result.reference, tag, target_repository, result.digest, tuple(pins), built=True, result=result)
