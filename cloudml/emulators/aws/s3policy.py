"""S3 bucket policies with explicit Deny statements, enforced the way S3 does (moto stores
bucket policies but only checks them with its global IAM mode). Identity policies are not
modelled: every caller is allowed what no bucket policy denies."""

from __future__ import annotations

import fnmatch
import json
from urllib.parse import parse_qs


def s3_request(method: str, path: str, query: str, host: str) -> tuple[str | None, str | None, str]:
    """(bucket, key, IAM action) of an S3 request, path-style or virtual-host style."""
    params = parse_qs(query, keep_blank_values=True)
    hostname = host.split(":")[0]
    parts = path.lstrip("/").split("/", 1)
    bucket: str | None
    key: str | None
    if hostname.count(".") >= 1 and not hostname.replace(".", "").isdigit() and not hostname.startswith("s3."):
        bucket, key = hostname.split(".", 1)[0], path.lstrip("/") or None
    else:
        bucket, key = (parts[0] or None), (parts[1] if len(parts) > 1 and parts[1] else None)
    if bucket is None:
        return None, None, "s3:ListAllMyBuckets"
    for sub, (read, write) in _SUBRESOURCES.items():
        if sub in params:
            if key and sub == "tagging":
                read, write = "s3:GetObjectTagging", "s3:PutObjectTagging"
            return bucket, key, read if method in ("GET", "HEAD") else write
    if key:
        if method in ("GET", "HEAD"):
            action = "s3:GetObject"
        elif method == "DELETE":
            action = "s3:AbortMultipartUpload" if "uploadId" in params else "s3:DeleteObject"
        else:
            action = "s3:PutObject"
    elif method == "POST" and "delete" in params:
        action = "s3:DeleteObject"
    elif "policy" in params:
        action = {"GET": "s3:GetBucketPolicy", "PUT": "s3:PutBucketPolicy", "DELETE": "s3:DeleteBucketPolicy"}.get(method, "s3:GetBucketPolicy")
    elif method in ("GET", "HEAD"):
        action = "s3:ListBucket"
    elif method == "PUT":
        action = "s3:CreateBucket"
    elif method == "DELETE":
        action = "s3:DeleteBucket"
    else:
        action = "s3:ListBucket"
    return bucket, key, action


# Bucket (and object) subresources and the IAM actions that read / write them.
_SUBRESOURCES = {
    "publicAccessBlock": ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    "encryption": ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "tagging": ("s3:GetBucketTagging", "s3:PutBucketTagging"),
    "location": ("s3:GetBucketLocation", "s3:GetBucketLocation"),
    "versioning": ("s3:GetBucketVersioning", "s3:PutBucketVersioning"),
    "acl": ("s3:GetBucketAcl", "s3:PutBucketAcl"),
    "lifecycle": ("s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
}


def as_list(value) -> list:
    """Policy documents allow a string or a list wherever a list may go."""
    return value if isinstance(value, list) else [value]


def denied(policy: bytes | str | None, *, bucket: str, key: str | None, action: str) -> bool:
    if not policy:
        return False
    try:
        document = json.loads(policy)
    except ValueError:
        return False
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
    for statement in as_list(document.get("Statement", [])):
        if statement.get("Effect") != "Deny":
            continue
        actions = [a.lower() for a in as_list(statement.get("Action", []))]
        if not any(fnmatch.fnmatchcase(action.lower(), a) for a in actions):
            continue
        if any(fnmatch.fnmatchcase(resource, r) for r in as_list(statement.get("Resource", []))):
            return True
    return False


def access_denied_xml(resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        f"<Message>Access Denied (explicit deny in the bucket policy for {resource})</Message>"
        "<RequestId>cloudml-emulator</RequestId></Error>"
    ).encode()
