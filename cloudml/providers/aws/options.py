"""Typed options of the `aws` provider (flags `-o key=value`, `aws:` in cloudml.yaml,
`CLOUDML_AWS_<KEY>` variables)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from cloudml.providers.cloud import CloudOptions

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class AwsOptions(CloudOptions):
    region: str | None = Field(default=None, description="AWS region; default: AWS_REGION / AWS_DEFAULT_REGION / the profile's.")
    profile: str | None = Field(default=None, description="Named profile from ~/.aws/config.")
    endpoint_url: str | None = Field(default=None, description="An AWS-compatible endpoint (LocalStack, the cloudml emulator); AWS_ENDPOINT_URL works too.")
    role_arn: str | None = Field(default=None, description="SageMaker execution role: it must trust sagemaker.amazonaws.com and read the bucket.")
    bucket: str | None = Field(default=None, description="S3 bucket for model.tar.gz; default cloudml-<account>-<region>, created if absent.")
    prefix: str = Field(default="cloudml", description="Key prefix inside the bucket.")
    kms_key_id: str | None = Field(default=None, description="KMS key for the S3 objects and the endpoint's volumes; default SSE-S3 (AES256).")
    instance_type: str = Field(default="ml.m5.large", description="Default when the spec sets no resources.instance_type.")
    instance_count: int = Field(default=1, ge=1, description="Instances a new endpoint starts with (at least min_replicas).")
    target_invocations_per_instance: float = Field(default=100.0, gt=0,
        description="Autoscaling target (invocations per instance per minute) when max_replicas is set.")
    rollback_alarms: list[str] = Field(default_factory=list, description="CloudWatch alarms that roll an update back while it runs.")
    termination_wait_seconds: int = Field(default=0, ge=0, le=3600,
        description="How long the old fleet stays after traffic moved (a window for alarm-driven rollback).")

    @field_validator("role_arn")
    @classmethod
    def _check_role(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.match(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)")
        return value

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is not None and not BUCKET_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)")
        return value

    @field_validator("prefix")
    @classmethod
    def _strip_prefix(cls, value: str) -> str:
        return value.strip("/")
