"""boto3 clients for one region/account, and AWS errors turned into cloudml errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from cloudml.errors import CloudMLError, ConfigError, DeployFailed, ProviderUnavailable
from cloudml.providers.aws.options import AwsOptions

POLICY_HINT = "the least-privilege policy cloudml needs is in deploy_templates/aws-iam-policy.json"
REGION_HINT = ("pass -o region=us-east-1, set aws: {region: ...} in cloudml.yaml, export AWS_REGION (or AWS_DEFAULT_REGION), "
               "or set region in your profile (aws configure)")


def resolve_region(options: AwsOptions) -> str | None:
    """The region as the AWS SDKs document it: the option, then AWS_REGION, then AWS_DEFAULT_REGION
    and the profile's (boto3 reads those two itself, but not AWS_REGION, which the other SDKs and
    the CLI v2 honour first)."""
    return options.region or os.environ.get("AWS_REGION") or None


class AwsSession:
    def __init__(self, options: AwsOptions):
        import boto3
        from botocore.config import Config

        self.options = options
        try:
            self._session = boto3.Session(profile_name=options.profile, region_name=resolve_region(options))
        except Exception as exc:  # ProfileNotFound and friends
            raise ConfigError(f"cannot open AWS profile {options.profile!r}: {exc}", hint="check ~/.aws/config or drop the profile option") from None
        if not self._session.region_name:
            raise ConfigError(
                "no AWS region configured",
                hint=REGION_HINT,
            )
        # Standard retries back off on throttling; a refused call still surfaces quickly.
        self._config = Config(retries={"mode": "standard", "max_attempts": 4}, user_agent_extra="cloudml")

    @property
    def region(self) -> str:
        return self._session.region_name

    def client(self, service: str):
        return self._session.client(service, endpoint_url=self.options.endpoint_url, config=self._config)

    @cached_property
    def sagemaker(self):
        return self.client("sagemaker")

    @cached_property
    def runtime(self):
        return self.client("sagemaker-runtime")

    @cached_property
    def s3(self):
        return self.client("s3")

    @cached_property
    def autoscaling(self):
        return self.client("application-autoscaling")

    @cached_property
    def logs(self):
        return self.client("logs")

    @cached_property
    def account_id(self) -> str:
        with aws_errors("finding your AWS account (sts:GetCallerIdentity)"):
            return self.client("sts").get_caller_identity()["Account"]

    def runtime_url(self, endpoint: str) -> str:
        base = self.runtime.meta.endpoint_url.rstrip("/")
        return f"{base}/endpoints/{endpoint}/invocations"


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "")) or str(exc)


def is_not_found(exc: BaseException) -> bool:
    code, message = error_code(exc), error_message(exc)
    return code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFoundException", "ObjectNotFoundException") or (
        code in ("ValidationException", "ValidationError") and ("Could not find" in message or "not found" in message)
    )


ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation", "Forbidden"}


@contextlib.contextmanager
def aws_errors(doing: str, *, error: type[CloudMLError] = DeployFailed, passthrough: type[BaseException] | tuple = ()) -> Iterator[None]:
    """Translate botocore failures while `doing` something into errors that say what to do
    (`passthrough`: exception types the caller handles itself)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    try:
        yield
    except CloudMLError:
        raise
    except passthrough:
        raise
    except NoCredentialsError:
        raise ConfigError(
            f"no AWS credentials while {doing}",
            hint="run `aws configure`, set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or start `cloudml emulator aws` for offline use)",
        ) from None
    except NoRegionError:
        raise ConfigError("no AWS region configured", hint=REGION_HINT) from None
    except EndpointConnectionError as exc:
        raise ProviderUnavailable(f"cannot reach AWS while {doing}: {exc}", hint="check the network, the region and endpoint_url / AWS_ENDPOINT_URL") from None
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if code in ACCESS_DENIED:
            raise DeployFailed(
                f"access denied while {doing}: {message}",
                hint=f"grant the caller the missing permission (and check bucket policies); {POLICY_HINT}",
            ) from None
        if code == "ResourceLimitExceeded":
            raise DeployFailed(f"SageMaker refused {doing}: {message}",
                hint="request a quota increase in Service Quotas, or use a smaller or different instance type") from None
        if code in ("ThrottlingException", "Throttling"):
            raise DeployFailed(f"AWS throttled {doing}: {message}", hint="wait a minute and run the command again; it resumes where it stopped") from None
        if "assume role" in message:
            raise ConfigError(
                f"SageMaker cannot use the execution role while {doing}: {message}",
                hint="pass the ARN of an existing role whose trust policy allows sagemaker.amazonaws.com "
                     "(see deploy_templates/aws-sagemaker-trust-policy.json)",
            ) from None
        raise error(f"AWS refused {doing}: {code}: {message}") from None
    except BotoCoreError as exc:
        raise error(f"AWS call failed while {doing}: {exc}") from None


def tags_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def tag_list(tags: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]
