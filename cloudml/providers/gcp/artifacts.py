"""The model folder in GCS: a private bucket and content-addressed objects, uploaded only when
they differ from what is there (same md5 = same file)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cloudml.errors import DeployFailed
from cloudml.providers.gcp.session import GcpSession, gcp_errors

HASH_METADATA = "cloudml-sha256"


def default_bucket(gcp: GcpSession) -> str:
    return f"{gcp.project}-cloudml"


def ensure_bucket(gcp: GcpSession, bucket: str) -> bool:
    """Make sure `bucket` exists; create it private (uniform access, public access prevented) in
    the deployment's region if absent. Returns True when it was created."""
    from google.api_core import exceptions as api

    with gcp_errors(f"checking GCS bucket {bucket!r}"):
        try:
            if gcp.storage.lookup_bucket(bucket) is not None:
                return False
        except api.Forbidden:
            raise DeployFailed(
                f"no access to GCS bucket {bucket!r} (it belongs to another project, or your credentials lack storage.buckets.get on it)",
                hint="pass -o staging_bucket=<a bucket you own>, or grant roles/storage.objectAdmin on it (deploy_templates/gcp-roles.md)",
            ) from None
    with gcp_errors(f"creating GCS bucket {bucket!r}"):
        new = gcp.storage.bucket(bucket)
        new.iam_configuration.uniform_bucket_level_access_enabled = True
        new.iam_configuration.public_access_prevention = "enforced"
        gcp.storage.create_bucket(new, location=gcp.location)
    return True


def _md5_b64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def upload_folder(gcp: GcpSession, folder: Path, *, bucket: str, prefix: str) -> tuple[list[str], int]:
    """Upload every file of `folder` under gs://bucket/prefix/, skipping objects already there with
    the same content. Returns (names uploaded, number skipped)."""
    with gcp_errors(f"listing gs://{bucket}/{prefix}/"):
        existing = {b.name: b for b in gcp.storage.list_blobs(bucket, prefix=f"{prefix}/")}
    uploaded, skipped = [], 0
    target = gcp.storage.bucket(bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = f"{prefix}/{path.relative_to(folder).as_posix()}"
        have = existing.get(name)
        if have is not None and (have.md5_hash == _md5_b64(path) or (have.metadata or {}).get(HASH_METADATA) == _sha256(path)):
            skipped += 1
            continue
        with gcp_errors(f"uploading gs://{bucket}/{name}"):
            blob = target.blob(name)
            blob.metadata = {HASH_METADATA: _sha256(path)}
            blob.upload_from_filename(str(path))
        uploaded.append(name)
    return uploaded, skipped


def delete_objects(gcp: GcpSession, *, bucket: str, names: list[str]) -> None:
    from google.api_core import exceptions as api

    target = gcp.storage.bucket(bucket)
    for name in names:
        try:
            target.blob(name).delete()
        except api.NotFound:
            pass


def delete_prefix(gcp: GcpSession, *, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`; returns how many."""
    from google.api_core import exceptions as api

    try:
        names = [b.name for b in gcp.storage.list_blobs(bucket, prefix=prefix)]
    except api.NotFound:
        return 0
    delete_objects(gcp, bucket=bucket, names=names)
    return len(names)
