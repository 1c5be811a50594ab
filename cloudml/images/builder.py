"""Build an image on a base image and push it, with no Docker daemon (the way ko and jib do).

The base is resolved to a digest and recorded in the image's labels, so the same base tag moved
to a new build gives a different image, and the same inputs always give the same image digest.
Before a blob is sent the target registry is asked whether it has it (HEAD): a rebuild of an
unchanged image uploads nothing, a changed runtime layer uploads that layer only. A base layer
the target lacks is mounted from the base repository when both are on one registry, else copied
through a local file.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cloudml import __version__
from cloudml.errors import ConfigError
from cloudml.images.errors import ImageNotFound
from cloudml.images.layers import Layer
from cloudml.images.oci import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    ImageSettings,
    Manifest,
    build_config,
    canonical,
    image_manifest,
    layer_descriptor,
    parse_manifest,
)
from cloudml.images.registry import Credentials, Reference, RegistryClient
from cloudml.progress import SILENT, Progress

BASE_NAME_LABEL = "org.opencontainers.image.base.name"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"


def version_labels(runtime: str, runtime_version: str, framework: str | None = None, framework_version: str | None = None) -> dict[str, str]:
    """The labels naming what an image serves with: cloudml's version, the runtime backend, the framework."""
    out = {"io.cloudml.version": __version__, "io.cloudml.runtime": runtime, "io.cloudml.runtime.version": runtime_version}
    if framework:
        out["io.cloudml.framework"] = framework
        out["io.cloudml.framework.version"] = framework_version or ""
    return out


def runtime_tag(cloudml_version: str, runtime: str, runtime_version: str, accelerator: str = "cpu", extra: str = "") -> str:
    """A tag naming what an image holds (e.g. '0.1.0-onnxruntime-1.32.0-cpu'), valid as an OCI tag:
    a deploy that derives it the same way finds the image without building it."""
    raw = "-".join(p for p in (cloudml_version, runtime, runtime_version, accelerator, extra) if p)
    tag = re.sub(r"[^\w.-]+", "_", raw).lstrip(".-")[:128]
    if not tag:
        raise ConfigError(f"no image tag can be made from {raw!r}", hint="give the cloudml version, runtime and its version")
    return tag


@dataclass(frozen=True)
class BlobPush:
    digest: str
    size: int
    action: str  # "uploaded", "mounted" (from the base repository, no bytes sent) or "skipped" (already there)
    what: str  # "base layer", "layer <comment>", "config"


@dataclass(frozen=True)
class BuildResult:
    reference: str  # the target, pinned: registry/repository:tag@sha256:...
    digest: str  # the image (manifest) digest
    base: str  # the base, pinned to the digest it resolved to
    blobs: tuple[BlobPush, ...]

    @property
    def uploaded(self) -> list[BlobPush]:
        return [b for b in self.blobs if b.action == "uploaded"]

    @property
    def skipped(self) -> list[BlobPush]:
        return [b for b in self.blobs if b.action != "uploaded"]

    @property
    def bytes_uploaded(self) -> int:
        return sum(b.size for b in self.uploaded)

    @property
    def bytes_skipped(self) -> int:
        return sum(b.size for b in self.skipped)


def _ref(value: str | Reference) -> Reference:
    return value if isinstance(value, Reference) else Reference.parse(value)


def exists(target: str | Reference, *, credentials: Credentials | None = None, plain_http: bool | None = None) -> str | None:
    """The digest the target's tag (or digest) names in its registry, None when there is none yet:
    a caller whose tag is derived from the image's contents skips the build when it is there."""
    ref = _ref(target)
    return RegistryClient(ref.registry, credentials=credentials, plain_http=plain_http).head_manifest(ref.repository, ref.reference)


def build(
    base: str | Reference | None,
    layers: Sequence[Layer],
    settings: ImageSettings,
    target: str | Reference,
    *,
    base_credentials: Credentials | None = None,
    target_credentials: Credentials | None = None,
    plain_http: bool | None = None,
    work_dir: Path | None = None,
    progress: Progress = SILENT,
) -> BuildResult:
    """Pull the base's manifest and config, add `layers` and `settings`, push what the target lacks,
    and put the manifest under the target's tag. Returns the image digest and what was sent.

    `base=None` builds from scratch (an OCI image of `layers` alone, such as a root file system)."""
    target_ref = _ref(target)
    if target_ref.digest:
        raise ConfigError(f"the target {target_ref} names a digest", hint="push to a tag; the digest is what the build computes")
    dest = RegistryClient(target_ref.registry, credentials=target_credentials, plain_http=plain_http)
    if base is None:
        base_ref, source, same_registry, pinned = None, dest, False, ""
        base_manifest = Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, "", 0), ())
        base_config: dict = {"architecture": "amd64", "os": "linux", "config": {}}
        labels = dict(settings.labels)
    else:
        base_ref = _ref(base)
        same_registry = base_ref.registry == target_ref.registry and base_credentials == target_credentials
        source = dest if same_registry else RegistryClient(base_ref.registry, credentials=base_credentials, plain_http=plain_http)
        base_manifest, base_config, base_digest = _pull_base(source, base_ref, progress)
        pinned = str(replace(base_ref, digest=base_digest))
        labels = {BASE_NAME_LABEL: str(replace(base_ref, digest=None)), BASE_DIGEST_LABEL: base_digest, **settings.labels}

    config = canonical(build_config(base_config, [layer.diff_id for layer in layers], [layer.comment for layer in layers], replace(settings, labels=labels)))
    new_layers = [layer_descriptor(layer.media_type, layer.digest, layer.size, base_manifest.media_type) for layer in layers]
    manifest = image_manifest(base_manifest.media_type, config, list(base_manifest.layers) + new_layers)

    repo = target_ref.repository
    pushed: list[BlobPush] = []

    def record(push: BlobPush) -> None:
        pushed.append(push)
        progress.note(f"{push.what} {push.digest[7:19]} ({push.size:,} bytes): {push.action}")

    with progress.step(f"Pushing {target_ref}"), tempfile.TemporaryDirectory(dir=work_dir, prefix="cloudml-image-") as tmp:
        for desc in base_manifest.layers:
            if dest.blob_exists(repo, desc.digest):
                record(BlobPush(desc.digest, desc.size, "skipped", "base layer"))
            elif base_ref is not None and same_registry and dest.mount_blob(repo, desc.digest, base_ref.repository):
                record(BlobPush(desc.digest, desc.size, "mounted", "base layer"))
            elif base_ref is not None:
                blob = source.pull_blob(base_ref.repository, desc.digest, Path(tmp) / desc.digest.replace(":", "-"))
                dest.push_blob(repo, desc.digest, desc.size, blob)
                blob.unlink()
                record(BlobPush(desc.digest, desc.size, "uploaded", "base layer"))
        for layer in layers:
            what = f"layer {layer.comment}".strip()
            if dest.blob_exists(repo, layer.digest):
                record(BlobPush(layer.digest, layer.size, "skipped", what))
            else:
                dest.push_blob(repo, layer.digest, layer.size, layer.path)
                record(BlobPush(layer.digest, layer.size, "uploaded", what))
        if dest.blob_exists(repo, manifest.config.digest):
            record(BlobPush(manifest.config.digest, len(config), "skipped", "config"))
        else:
            dest.push_blob(repo, manifest.config.digest, len(config), config)
            record(BlobPush(manifest.config.digest, len(config), "uploaded", "config"))
        digest = dest.put_manifest(repo, target_ref.tag or manifest.digest, manifest.to_bytes(), manifest.media_type)
    return BuildResult(str(target_ref.with_digest(digest)), digest, pinned, tuple(pushed))


def _pull_base(source: RegistryClient, base_ref: Reference, progress: Progress) -> tuple[Manifest, dict, str]:
    with progress.step(f"Resolving base image {base_ref}"):
        try:
            data, media_type, base_digest = source.get_image_manifest(base_ref.repository, base_ref.reference)
        except ImageNotFound as exc:
            raise ImageNotFound(
                f"the base image {base_ref} cannot be pulled: {exc.message}",
                status=exc.status,
                code=exc.code,
                hint="check base_image (repository and tag) and that the registry holds it; a mirror can be given as base_image",
            ) from None
        base_manifest = parse_manifest(data, media_type)
        return base_manifest, json.loads(source.get_blob(base_ref.repository, base_manifest.config.digest)), base_digest
