"""`cloudml package --container`: a Docker build context running the cloudml serving runtime.

The context is self-contained (this cloudml's source, pinned requirements, the packaged model),
so it builds on any machine with Docker, with no access to this one.
"""

from __future__ import annotations

import shutil
from importlib import metadata, resources
from pathlib import Path
from string import Template

from cloudml.contract import Manifest
from cloudml.packaging import PackagedModel

# What the serving runtime imports at run time; pinned to the versions this cloudml runs with.
RUNTIME_DISTRIBUTIONS = ("numpy", "orjson", "pydantic", "pyyaml", "starlette", "uvicorn", "httptools", "typer", "rich")
PYTHON_VERSION = "3.11"


def templates_dir() -> Path:
    return Path(str(resources.files("cloudml.deploy_templates")))


def _pinned(dist: str) -> str:
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def requirements(manifest: Manifest) -> str:
    if manifest.runtime.backend == "onnx":
        lines = ["# The ONNX Runtime the model was verified with; no TensorFlow or torch is needed to serve it.", _pinned("onnxruntime")]
    else:
        lines = ["# The TensorFlow that exported the model, so the container can always load it.", f"tensorflow-cpu=={manifest.tensorflow_version}"]
    lines += [_pinned(dist) for dist in RUNTIME_DISTRIBUTIONS]
    return "\n".join(lines) + "\n"


def render_build_context(packaged: PackagedModel, target: Path) -> Path:
    manifest = packaged.manifest
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    values = {
        "python_version": PYTHON_VERSION,
        "image_name": f"cloudml-{manifest.model_name}:{manifest.model_version}",
        "model_name": manifest.model_name,
    }
    source = templates_dir()
    (target / "Dockerfile").write_text(Template((source / "Dockerfile.template").read_text()).substitute(values))
    (target / ".dockerignore").write_text((source / "dockerignore.template").read_text())
    (target / "requirements.txt").write_text(requirements(manifest))
    package_root = Path(__file__).resolve().parents[1]
    shutil.copytree(package_root, target / "cloudml", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "deploy_templates"))
    shutil.copytree(packaged.folder, target / "model")
    return target
