"""The model artifact in S3: a private, encrypted bucket and a content-addressed `model.tar.gz`."""

from __future__ import annotations

from pathlib import Path

from cloudml.errors import DeployFailed
from cloudml.packaging.hashing import content_hash
from cloudml.providers.aws.session import AwsSession, aws_errors, error_code, is_not_found

HASH_METADATA = "cloudml-sha256"  # x-amz-meta-cloudml-sha256: the archive's sha256


def default_bucket(aws: AwsSession) -> str:
    return f"cloudml-{aws.account_id}-{aws.region}"


def ensure_bucket(aws: AwsSession, bucket: str) -> bool:
    """Make sure `bucket` exists and is ours to write; create it private and encrypted if absent.
    Returns True when it was created."""
    from botocore.exceptions import ClientError

    with aws_errors(f"checking S3 bucket {bucket!r}"):
        try:
            aws.s3.head_bucket(Bucket=bucket)
            return False
        except ClientError as exc:
            if error_code(exc) in ("403", "AccessDenied"):
                raise DeployFailed(
                    f"no access to S3 bucket {bucket!r} (it exists but belongs to another account, or your credentials lack s3:ListBucket on it)",
                    hint="pass -o bucket=<a bucket you own>, or grant the permissions in deploy_templates/aws-iam-policy.json",
                ) from None
            if not is_not_found(exc):
                raise
    with aws_errors(f"creating S3 bucket {bucket!r}"):
        kwargs = {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
        aws.s3.create_bucket(Bucket=bucket, **kwargs)
        aws.s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
        )
        rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": aws.options.kms_key_id} if aws.options.kms_key_id else {"SSEAlgorithm": "AES256"}
        aws.s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]},
        )
    return True


def upload_archive(aws: AwsSession, archive: Path, *, bucket: str, key: str, tags: dict[str, str], digest: str | None = None) -> bool:
    """Upload `archive` to s3://bucket/key unless an object with the same sha256 is there
    (`digest`: the archive's, when packaging computed it while writing). Multipart for large
    files (boto3's transfer manager). Returns True when it uploaded."""
    from urllib.parse import urlencode

    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    digest = digest or content_hash(archive)
    with aws_errors(f"checking s3://{bucket}/{key}"):
        try:
            head = aws.s3.head_object(Bucket=bucket, Key=key)
            if head.get("Metadata", {}).get(HASH_METADATA) == digest:
                return False
        except ClientError as exc:
            # 403 without s3:ListBucket means "not there" too; the upload then says what is missing.
            if not is_not_found(exc) and error_code(exc) not in ("403", "AccessDenied"):
                raise
    extra = {"Metadata": {HASH_METADATA: digest}, "Tagging": urlencode(tags)}
    if aws.options.kms_key_id:
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=aws.options.kms_key_id)
    else:
        extra["ServerSideEncryption"] = "AES256"
    config = TransferConfig(multipart_threshold=16 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024)
    with aws_errors(f"uploading the model to s3://{bucket}/{key}"):
        try:
            aws.s3.upload_file(str(archive), bucket, key, ExtraArgs=extra, Config=config)
        except Exception as exc:  # S3UploadFailedError wraps the ClientError
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError):
                raise cause from None
            if "AccessDenied" in str(exc):
                raise DeployFailed(
                    f"access denied while uploading the model to s3://{bucket}/{key}: {exc}",
                    hint="the caller needs s3:PutObject on the bucket (check bucket policies too); see deploy_templates/aws-iam-policy.json",
                ) from None
            raise
    return True


def delete_prefix(aws: AwsSession, *, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`; returns how many."""
    from botocore.exceptions import ClientError

    deleted = 0
    try:  # the caller wraps this in aws_errors
        pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                aws.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    except ClientError as exc:
        if is_not_found(exc):
            return deleted
        raise
    return deleted
