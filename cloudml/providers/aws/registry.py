"""The ECR repository cloudml's runtime images live in, and the credentials to push to it.

ECR wants a repository before the first push: `ensure_repository` creates it once (scan on
push, encrypted with AES256 or the configured KMS key, tagged as cloudml's). `registry_credentials`
turns `GetAuthorizationToken` (a base64 `AWS:<password>`, good for 12 hours) into what
cloudml.images' registry client sends; the registry's host comes from the token's
`proxyEndpoint`, so an AWS-compatible endpoint (the cloudml emulator) names its own registry.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from cloudml.errors import DeployFailed
from cloudml.images.registry import Credentials, RegistryTarget
from cloudml.providers.aws.session import AwsSession, aws_errors, error_code, tag_list

REPOSITORY = "cloudml/runtime"
OWNER_TAG = {"cloudml:owned": "true"}


def ensure_repository(session: AwsSession, name: str = REPOSITORY) -> bool:
    """Create the repository unless it exists; True when this call created it."""
    ecr = session.client("ecr")
    with aws_errors(f"looking up the ECR repository {name} (ecr:DescribeRepositories)"):
        try:
            ecr.describe_repositories(repositoryNames=[name])
            return False
        except Exception as exc:  # noqa: BLE001 - absent is an answer, the rest is translated
            if error_code(exc) != "RepositoryNotFoundException":
                raise
    kms = session.options.kms_key_id
    encryption = {"encryptionType": "KMS", "kmsKey": kms} if kms else {"encryptionType": "AES256"}
    with aws_errors(f"creating the ECR repository {name} (ecr:CreateRepository)"):
        try:
            ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
                                  encryptionConfiguration=encryption, imageTagMutability="MUTABLE", tags=tag_list(OWNER_TAG))
        except Exception as exc:  # noqa: BLE001 - another deploy created it meanwhile: fine
            if error_code(exc) != "RepositoryAlreadyExistsException":
                raise
            return False
    return True


def registry_credentials(session: AwsSession) -> tuple[str, Credentials]:
    """(registry host, credentials) from ecr:GetAuthorizationToken."""
    host, credentials, _ = _authorization(session)
    return host, credentials


def _authorization(session: AwsSession) -> tuple[str, Credentials, bool]:
    with aws_errors("getting an ECR push token (ecr:GetAuthorizationToken)"):
        [data] = session.client("ecr").get_authorization_token()["authorizationData"][:1]
    try:
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    except (KeyError, ValueError, UnicodeDecodeError):
        raise DeployFailed("ECR answered GetAuthorizationToken with a token that is not base64 'AWS:<password>'",
                           hint="check endpoint_url / AWS_ENDPOINT_URL: it should be ECR or an AWS-compatible endpoint") from None
    endpoint = urlsplit(data.get("proxyEndpoint") or "")
    if not endpoint.netloc:
        raise DeployFailed("ECR answered GetAuthorizationToken without a proxyEndpoint", hint="check endpoint_url / AWS_ENDPOINT_URL")
    return endpoint.netloc, Credentials(username, password), endpoint.scheme == "http"


def target(session: AwsSession, repository: str = REPOSITORY) -> RegistryTarget:
    """The repository made sure of, and what pushes to it."""
    ensure_repository(session, repository)
    host, credentials, plain_http = _authorization(session)
    return RegistryTarget(host, repository, credentials, plain_http)
