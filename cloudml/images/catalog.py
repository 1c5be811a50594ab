"""What a repository holds: its tags, and for each cloudml runtime image what it serves with,
read from the manifest (the layers' sizes) and the config (labels, created)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cloudml.images.oci import parse_manifest
from cloudml.images.registry import Credentials, Reference, RegistryClient

BACKEND_LABEL = "io.cloudml.backend"


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    digest: str
    backend: str | None  # None: not a cloudml runtime image
    backend_version: str | None
    cloudml_version: str | None
    size: int  # the layers' compressed sizes, as the manifest gives them
    created: str | None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> bool:
        return self.backend is not None


def repository_images(repository: Reference, *, credentials: Credentials | None = None, plain_http: bool | None = None) -> list[ImageInfo]:
    """Every tag of `repository` (HOST/REPO, no tag) described, sorted by tag."""
    client = RegistryClient(repository.registry, credentials=credentials, plain_http=plain_http)
    out = []
    for tag in sorted(client.list_tags(repository.repository)):
        data, media_type, digest = client.get_image_manifest(repository.repository, tag)
        manifest = parse_manifest(data, media_type)
        config = json.loads(client.get_blob(repository.repository, manifest.config.digest))
        labels = {str(k): str(v) for k, v in ((config.get("config") or {}).get("Labels") or {}).items()}
        out.append(ImageInfo(tag=tag, digest=digest, backend=labels.get(BACKEND_LABEL), backend_version=labels.get("io.cloudml.runtime.version"),
                             cloudml_version=labels.get("io.cloudml.version"), size=sum(layer.size for layer in manifest.layers),
                             created=config.get("created"), labels=labels))
    return out
