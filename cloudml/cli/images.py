"""`cloudml image build` and `cloudml image list`: the serving runtime images, outside a deploy.

A model's image is decided the way a deploy decides it: the model is packaged (in a temporary
folder) with the same runtime choice, and the package's backend names the image. `--provider`
pushes to the very repository that provider's `deploy -o build_image=true` uses, through the
deployer itself, so what a CI job pre-pushes is what the deploy finds."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudml.errors import ConfigError, UsageError
from cloudml.images.registry import Reference

if TYPE_CHECKING:
    from cloudml.images.catalog import ImageInfo
    from cloudml.images.registry import Credentials
    from cloudml.images.runtime import RuntimeImage
    from cloudml.progress import Progress
    from cloudml.providers.base import Deployer
    from cloudml.providers.cloud import CloudDeployer


def check_target(push: str | None, provider: str | None, *, plain_http: bool | None, flag: str, command: str) -> Reference | None:
    """The repository of --push (or `image list`'s REPO; None with --provider), refusing both,
    neither, and a REPO naming a tag or digest."""
    name = "--push HOST/REPO" if flag == "--push" else "HOST/REPO"
    if (push is None) == (provider is None):
        raise UsageError(f"{'both' if push else 'neither'} {flag} {'and' if push else 'nor'} --provider given: `cloudml image {command}` takes exactly one",
                         hint=f"{name} for a registry of your own, or --provider aws|gcp|azure for the repository that cloud's deploys use")
    if push is None:
        if plain_http is not None:
            raise UsageError("--plain-http is for --push: with --provider the cloud's registry decides", hint="drop --plain-http")
        return None
    repo = Reference.parse(push)
    if repo.tag or repo.digest:
        bare = f"{repo.registry}/{repo.repository}"
        raise ConfigError(f"{flag} {push!r} names a {'digest' if repo.digest else 'tag'}: give the repository only",
                          hint=f"{'--push ' if flag == '--push' else ''}{bare} (the tag names the image's contents and is derived)")
    return repo


def check_source(model: Path | None, backend: str | None, backend_version: str | None, runtime: str | None, sample: Path | None) -> None:
    if (model is None) == (backend is None):
        raise UsageError(f"{'both' if model else 'neither'} MODEL {'and' if model else 'nor'} --backend given",
                         hint="give MODEL to build the image it is served with, or --backend onnx|tensorflow to build one without a model")
    if model is not None and backend_version is not None:
        raise UsageError("--backend-version is for --backend: with MODEL the model decides it", hint="drop --backend-version")
    if backend is not None and (runtime is not None or sample is not None):
        raise UsageError("--runtime and --sample are for MODEL: with --backend there is no model to package", hint="drop them")


def cloud_deployer(deployer: Deployer, provider: str) -> CloudDeployer:
    from cloudml.providers.cloud import CloudDeployer

    if not isinstance(deployer, CloudDeployer):
        raise ConfigError(f"provider {provider!r} has no container registry", hint="--provider aws, gcp or azure, or --push HOST/REPO")
    return deployer


def model_runtime(model: Path, runtime: str, sample: Path | None, work: Path, progress: Progress) -> tuple[str, str | None, dict[str, Any]]:
    """(backend, version or None, what the package says) of MODEL packaged as a deploy packages it."""
    from cloudml.packaging import inspect_source
    from cloudml.preflight.prepare import prepare_model
    from cloudml.providers.cloud import runtime_of

    with progress.step(f"packaging {model} to decide its runtime"):
        packaged = prepare_model(inspect_source(model), work / "package", name=None, version=None, probe=False, runtime=runtime,  # type: ignore[arg-type]
                                 sample=sample, archive=False)
    manifest = packaged.manifest
    backend, version = runtime_of(manifest)
    about = {"path": str(model), "backend": backend, "framework": manifest.runtime.framework, "fallback_reason": manifest.runtime.fallback_reason}
    return backend, version, about


def push_credentials(repo: Reference, base: Reference) -> tuple[Credentials | None, Credentials | None]:
    """(target, base) logins: the pushed-to registry's from the variables or the auth files, the base's from the auth files."""
    from cloudml.images.auth import registry_credentials

    target = registry_credentials(repo.registry)
    return target, target if base.registry == repo.registry else registry_credentials(base.registry, variables=False)


def build(*, model: Path | None, backend: str | None, backend_version: str | None, runtime: str, sample: Path | None,
          repo: Reference | None, deployer: CloudDeployer | None, base_image: str, wheelhouse: Path | None, plain_http: bool | None,
          progress: Progress) -> tuple[dict[str, Any], str]:
    from cloudml.images.runtime import default_version, runtime_image

    with tempfile.TemporaryDirectory(prefix="cloudml-image-") as scratch:
        work = Path(scratch)
        about = None
        if model is not None:
            backend, backend_version, about = model_runtime(model, runtime, sample, work, progress)
        assert backend is not None
        version = backend_version or default_version(backend)
        if deployer is not None:
            image = deployer.ensure_runtime_image(backend, version, work / "build")
        else:
            assert repo is not None
            base = Reference.parse(base_image)
            if wheelhouse is not None and not wheelhouse.is_dir():
                raise ConfigError(f"--wheelhouse {wheelhouse} is not a folder", hint="give a folder of linux/amd64 wheels (pip download --platform ...)")
            target_credentials, base_credentials = push_credentials(repo, base)
            with progress.step(f"image for {backend} in {repo}"):
                image = runtime_image(backend, target_repository=str(repo), backend_version=version, base=base_image,
                                      base_credentials=base_credentials, target_credentials=target_credentials, plain_http=plain_http,
                                      find_links=[wheelhouse] if wheelhouse else (), no_index=wheelhouse is not None, work_dir=work,
                                      progress=progress)
    return _built(image, backend, version, about)


def _built(image: RuntimeImage, backend: str, version: str, about: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    from cloudml import __version__

    blobs = [{"digest": b.digest, "size": b.size, "action": b.action, "what": b.what} for b in (image.result.blobs if image.result else ())]
    data = {"reference": image.pinned, "tagged": image.reference, "repository": image.repository, "tag": image.tag, "digest": image.digest,
            "backend": backend, "backend_version": version, "cloudml_version": __version__, "built": image.built,
            "bytes_uploaded": image.bytes_uploaded, "blobs": blobs, "requirements": list(image.requirements), "model": about}
    if image.built:
        sent = sum(1 for b in blobs if b["action"] == "uploaded")
        outcome = f"built and pushed: {image.bytes_uploaded / 1e6:.1f} MB in {sent} blob(s), {len(blobs) - sent} already there"
    else:
        outcome = "found in the registry: nothing built or pushed"
    lines = [f"image:   {image.pinned}", f"tag:     {image.repository}:{image.tag}",
             f"runtime: {backend} {version} (cloudml {__version__})", outcome]
    if about and about.get("fallback_reason"):
        lines.insert(3, f"not served by onnx: {about['fallback_reason']}")
    return data, "\n".join(lines)


def listing(*, repo: Reference | None, deployer: CloudDeployer | None) -> tuple[dict[str, Any], str]:
    from cloudml.images.auth import registry_credentials
    from cloudml.images.catalog import repository_images

    if deployer is not None:
        target = deployer.registry_target()
        repo = Reference(target.host, target.repository)
        images = repository_images(repo, credentials=target.credentials, plain_http=target.plain_http)
    else:
        assert repo is not None
        images = repository_images(repo, credentials=registry_credentials(repo.registry))
    runtimes = [i for i in images if i.runtime]
    others = [i.tag for i in images if not i.runtime]
    data = {"repository": f"{repo.registry}/{repo.repository}", "images": [_row(i) for i in runtimes], "other_tags": others}
    if not runtimes:
        text = f"no cloudml runtime images in {data['repository']}"
    else:
        table = [("TAG", "BACKEND", "VERSION", "CLOUDML", "SIZE", "DIGEST")]
        table += [(i.tag, i.backend or "", i.backend_version or "", i.cloudml_version or "", f"{i.size / 1e6:.1f} MB", i.digest[:19]) for i in runtimes]
        widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
        text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)
    if others:
        text += f"\n({len(others)} other tag(s), not cloudml runtime images: {', '.join(others)})"
    return data, text


def _row(info: ImageInfo) -> dict[str, Any]:
    return {"tag": info.tag, "digest": info.digest, "backend": info.backend, "backend_version": info.backend_version,
            "cloudml_version": info.cloudml_version, "size": info.size, "created": info.created, "labels": info.labels}
