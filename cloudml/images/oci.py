"""OCI image configs and manifests as canonical JSON, so the same image always has the same digest.

Registries serve a base image's manifest either as an OCI manifest or as a Docker v2 schema2
manifest (and a multi-platform one as an OCI index or a Docker manifest list). The image built on
top keeps its base's format, with the new layers in that format's media type: a manifest mixing
the two families is refused by some registries and engines.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cloudml.errors import ConfigError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
# What a manifest GET accepts: any single-image manifest or index (an index is resolved to linux/amd64).
ACCEPT = ", ".join(MANIFESTS + INDEXES)
_FAMILY = {OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER), DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER)}
# The layer media types of each family, for converting a new layer's type into its base's family.
_LAYER_TYPES = {OCI_LAYER: DOCKER_LAYER, DOCKER_LAYER: OCI_LAYER}
# An image's created time: fixed, so a rebuild gives the same config digest.
EPOCH = "1970-01-01T00:00:00Z"
PLATFORM = {"architecture": "amd64", "os": "linux"}


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON document: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Descriptor:
        try:
            return cls(str(obj["mediaType"]), str(obj["digest"]), int(obj["size"]), dict(obj.get("annotations") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"malformed descriptor in a manifest: {obj!r} ({exc})", hint="the base image's manifest is not a valid OCI or Docker manifest"
            ) from None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def to_bytes(self) -> bytes:
        return canonical({"schemaVersion": 2, "mediaType": self.media_type, "config": self.config.to_json(), "layers": [d.to_json() for d in self.layers]})

    @property
    def digest(self) -> str:
        return digest_of(self.to_bytes())

    @property
    def layer_type(self) -> str:
        return _FAMILY[self.media_type][1]


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    """A single-image manifest, OCI or Docker schema2 (`media_type` from Content-Type when the body lacks it)."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"the manifest is not JSON: {exc}", hint="the registry returned something other than an image manifest") from None
    kind = obj.get("mediaType") or media_type.split(";")[0].strip() or OCI_MANIFEST
    if kind in INDEXES:
        raise ConfigError("the manifest is an index, not a single image", hint="pick a platform with select_platform() first")
    if kind not in MANIFESTS or obj.get("schemaVersion") != 2:
        raise ConfigError(
            f"unsupported manifest type {kind!r} (schemaVersion {obj.get('schemaVersion')})",
            hint="use a base image published as an OCI or Docker v2 schema2 image",
        )
    return Manifest(kind, Descriptor.from_json(obj["config"]), tuple(Descriptor.from_json(d) for d in obj.get("layers") or ()))


def select_platform(data: bytes, platform: dict[str, str] = PLATFORM) -> Descriptor:
    """The manifest for `platform` (linux/amd64) in an OCI index or a Docker manifest list."""
    obj = json.loads(data)
    found = []
    for item in obj.get("manifests") or ():
        plat = item.get("platform") or {}
        if all(plat.get(k) == v for k, v in platform.items()) and plat.get("variant") in (None, "", "v1"):
            found.append(Descriptor.from_json(item))
    if not found:
        offered = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}" for m in obj.get("manifests") or ()})
        raise ConfigError(
            f"the base image has no {platform['os']}/{platform['architecture']} variant (it offers {', '.join(offered) or 'none'})",
            hint="choose a base image built for linux/amd64",
        )
    return found[0]


@dataclass(frozen=True)
class ImageSettings:
    """What the built image runs and says about itself; unset fields keep the base's values."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[int, ...] = ()
    working_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    user: str = "10001"


def _merge_env(base: list[str], extra: dict[str, str]) -> list[str]:
    merged = dict(item.partition("=")[::2] for item in base)
    merged.update(extra)
    return [f"{k}={v}" for k, v in merged.items()]


def build_config(base: dict[str, Any], diff_ids: list[str], comments: list[str], settings: ImageSettings) -> dict[str, Any]:
    """The new image's config: the base's runtime settings with `settings` applied, the base's
    layers plus the new ones (`diff_ids`), and a history without timestamps."""
    if base.get("os", "linux") != "linux" or base.get("architecture", "amd64") != "amd64":
        raise ConfigError(f"the base image is {base.get('os')}/{base.get('architecture')}, not linux/amd64", hint="choose a base image built for linux/amd64")
    run = dict(base.get("config") or {})
    run["User"] = settings.user
    if settings.entrypoint is not None:
        run["Entrypoint"] = list(settings.entrypoint)
        # As in a Dockerfile: a new ENTRYPOINT drops the base's CMD, which was written for the old one.
        run.pop("Cmd", None)
    if settings.cmd is not None:
        run["Cmd"] = list(settings.cmd)
    if settings.env:
        run["Env"] = _merge_env(list(run.get("Env") or []), settings.env)
    if settings.exposed_ports:
        run["ExposedPorts"] = {**(run.get("ExposedPorts") or {}), **{f"{p}/tcp": {} for p in settings.exposed_ports}}
    if settings.working_dir is not None:
        run["WorkingDir"] = settings.working_dir
    if settings.labels:
        run["Labels"] = {**(run.get("Labels") or {}), **settings.labels}
    base_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
    history = [{k: v for k, v in h.items() if k != "created"} for h in base.get("history") or []]
    history += [{"created_by": f"cloudml images: {c}", "comment": "cloudml"} for c in comments]
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": base_ids + list(diff_ids)},
        "history": history,
    }


def layer_descriptor(media_type: str, digest: str, size: int, manifest_type: str) -> Descriptor:
    """A layer's descriptor in the family of `manifest_type` (OCI or Docker)."""
    wanted = _FAMILY[manifest_type][1]
    return Descriptor(wanted if _LAYER_TYPES.get(media_type) == wanted else media_type, digest, size)


def image_manifest(manifest_type: str, config: bytes, layers: list[Descriptor]) -> Manifest:
    return Manifest(manifest_type, Descriptor(_FAMILY[manifest_type][0], digest_of(config), len(config)), tuple(layers))
