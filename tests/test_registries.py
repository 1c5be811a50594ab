"""Each cloud's container registry, as the providers reach it through the clouds' SDKs, against the
emulators' real registry (CNCF distribution): the repository is made once, the credentials the
provider gets push an image with cloudml's registry client, an independent client (skopeo) sees
the pushed manifest, and wrong or expired credentials are refused with a clear error."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from cloudml.errors import CloudMLError
from cloudml.images.errors import RegistryAuthError
from cloudml.images.registry import Credentials, RegistryClient

pytestmark = pytest.mark.skipif(not (shutil.which("docker-registry") and shutil.which("skopeo")),
                                reason="needs docker-registry and skopeo (Debian packages)")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_small_image(client: RegistryClient, repository: str, tag: str) -> str:
    """A one-layer image (a blob, a config, a manifest); its manifest digest."""
    layer = f"layer of {repository}:{tag}".encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "10001"},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    blobs = [(layer, "application/vnd.oci.image.layer.v1.tar"), (config, "application/vnd.oci.image.config.v1+json")]
    descriptors = []
    for data, media_type in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not client.blob_exists(repository, digest):
            client.push_blob(repository, digest, len(data), data)
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[1], "layers": [descriptors[0]]}).encode()
    return client.put_manifest(repository, tag, manifest, OCI_MANIFEST)


def skopeo_inspect(host: str, repository: str, tag: str, credentials: Credentials | None) -> tuple[str, dict]:
    """(digest, manifest) as skopeo reads them."""
    creds = ["--creds", f"{credentials.username}:{credentials.password}"] if credentials and credentials.username else []
    result = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", *creds, f"docker://{host}/{repository}:{tag}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return "sha256:" + hashlib.sha256(result.stdout.encode()).hexdigest(), json.loads(result.stdout)


def assert_pushes(host: str, repository: str, credentials: Credentials, tag: str = "v1") -> None:
    client = RegistryClient(host, credentials=credentials)
    client.ping()
    digest = push_small_image(client, repository, tag)
    seen, manifest = skopeo_inspect(host, repository, tag, credentials)
    assert seen == digest
    assert manifest["mediaType"] == OCI_MANIFEST and len(manifest["layers"]) == 1


# -- AWS: ECR -------------------------------------------------------------------------------------


def test_ecr_repository_credentials_and_push(aws_emulator):
    import boto3

    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository, registry_credentials
    from cloudml.providers.aws.session import AwsSession

    session = AwsSession(AwsOptions())
    name = "cloudml/runtime-ecr-test"
    assert ensure_repository(session, name) is True
    assert ensure_repository(session, name) is False  # the second call creates nothing
    ecr = boto3.client("ecr")
    [repo] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert {"Key": "cloudml:owned", "Value": "true"} in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]

    host, credentials = registry_credentials(session)
    assert credentials.username == "AWS" and host.startswith("127.0.0.1:")
    assert_pushes(host, name, credentials)

    # ECR refuses a push into a repository never created.
    with pytest.raises(RegistryAuthError) as refused:
        push_small_image(RegistryClient(host, credentials=credentials), "cloudml/never-created", "v1")
    assert "denied" in str(refused.value)


def test_ecr_refuses_wrong_and_expired_tokens(aws_emulator):
    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository, registry_credentials
    from cloudml.providers.aws.session import AwsSession

    session = AwsSession(AwsOptions())
    ensure_repository(session, "cloudml/runtime-ecr-test")
    host, credentials = registry_credentials(session)
    with pytest.raises(RegistryAuthError) as wrong:
        push_small_image(RegistryClient(host, credentials=Credentials("AWS", "not-the-token")), "cloudml/runtime-ecr-test", "v2")
    assert "refused the credentials" in str(wrong.value) and "log in again" in wrong.value.hint
    aws_emulator.expire_registry_tokens()
    with pytest.raises(RegistryAuthError):
        push_small_image(RegistryClient(host, credentials=credentials), "cloudml/runtime-ecr-test", "v2")
    # A fresh token works again.
    assert_pushes(host, "cloudml/runtime-ecr-test", registry_credentials(session)[1], "v2")


def test_ecr_repository_takes_the_configured_kms_key(aws_emulator):
    import boto3

    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository
    from cloudml.providers.aws.session import AwsSession

    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    assert ensure_repository(AwsSession(AwsOptions(kms_key_id=key)), "cloudml/runtime-kms-test") is True
    [repo] = boto3.client("ecr").describe_repositories(repositoryNames=["cloudml/runtime-kms-test"])["repositories"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}


def test_ecr_errors_are_translated(aws_emulator):
    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository
    from cloudml.providers.aws.session import AwsSession

    aws_emulator.refuse_next("CreateRepository", code="AccessDeniedException", message="not allowed to ecr:CreateRepository")
    with pytest.raises(CloudMLError) as denied:
        ensure_repository(AwsSession(AwsOptions()), "cloudml/denied")
    assert "access denied while creating the ECR repository cloudml/denied" in str(denied.value)
    assert "aws-iam-policy.json" in denied.value.hint


def test_ecr_calls_are_what_the_policy_grants(aws_emulator):
    """Every ECR call of a first push (API and registry) is allowed by deploy_templates/aws-iam-policy.json,
    for the repository's ARN."""
    import fnmatch

    from conftest import REPO

    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import target
    from cloudml.providers.aws.session import AwsSession

    aws_emulator.calls(clear=True)
    pushed = target(AwsSession(AwsOptions()), "cloudml/runtime-policy-test")
    push_small_image(RegistryClient(pushed.host, credentials=pushed.credentials, plain_http=pushed.plain_http), pushed.repository, "v1")
    made = {c["action"] for c in aws_emulator.calls() if "cloudml" in c["user_agent"]}
    assert {"ecr:CreateRepository", "ecr:GetAuthorizationToken", "ecr:InitiateLayerUpload", "ecr:PutImage"} <= made

    policy = json.loads((REPO / "deploy_templates" / "aws-iam-policy.json").read_text())
    arn = "arn:aws:ecr:us-east-1:123456789012:repository/cloudml/runtime-policy-test"

    def allowed(action: str) -> bool:
        for statement in policy["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
            if statement["Effect"] == "Allow" and action in actions and any(fnmatch.fnmatchcase(arn, r) for r in resources):
                return True
        return False

    missing = sorted(a for a in made if a.startswith("ecr:") and not allowed(a))
    assert not missing, f"aws-iam-policy.json lacks {missing} on {arn}"


# -- Azure: the workspace's ACR -------------------------------------------------------------------


def test_acr_login_server_exchange_and_push(azure_emulator):
    from cloudml.providers.azure.registry import ensure_repository, registry_credentials, target

    ml = azure_emulator.ml_client()
    where = {"resource_manager_url": azure_emulator.url}
    azure_emulator.calls(clear=True)
    assert ensure_repository(ml, azure_emulator.workspace, **where) is False  # ACR makes repositories at first push
    host, credentials = registry_credentials(ml, azure_emulator.workspace, **where)
    assert credentials.username == "00000000-0000-0000-0000-000000000000" and host.startswith("127.0.0.1:")
    assert_pushes(host, "cloudml/runtime", credentials)

    # Every action taken is in the custom role.
    from conftest import REPO

    role = json.loads((REPO / "deploy_templates" / "azure-custom-role.json").read_text())
    made = {c["action"] for c in azure_emulator.calls() if "cloudml/" in c["user_agent"]}
    assert {"Microsoft.ContainerRegistry/registries/read", "Microsoft.ContainerRegistry/registries/push/write"} <= made
    import fnmatch

    missing = sorted(a for a in made if not any(fnmatch.fnmatchcase(a.lower(), p.lower()) for p in role["Actions"]))
    assert not missing, f"azure-custom-role.json lacks {missing}"
    assert target(ml, azure_emulator.workspace, **where).plain_http is True


def test_acr_refuses_a_wrong_aad_token_and_a_wrong_refresh_token(azure_emulator):
    from cloudml.providers.azure.registry import exchange, login_server

    host = login_server(azure_emulator.ml_client(), azure_emulator.workspace, resource_manager_url=azure_emulator.url)
    with pytest.raises(CloudMLError) as refused:
        exchange(host, "not-an-azure-ad-token")
    assert "refused the Azure AD token" in str(refused.value) and "az login" in refused.value.hint
    with pytest.raises(RegistryAuthError):
        push_small_image(RegistryClient(host, credentials=Credentials("00000000-0000-0000-0000-000000000000", "made-up")), "cloudml/runtime", "v9")


# -- GCP: Artifact Registry -----------------------------------------------------------------------


def gcp_session(**options):
    """A session with the options as `cloudml -p gcp` resolves them: the emulator's CLOUDML_GCP_* variables, then these."""
    import os

    from cloudml.providers.gcp.options import GcpOptions
    from cloudml.providers.gcp.session import GcpSession
    from cloudml.providers.options import environment_layer, keyword_layer, resolve_options

    return GcpSession(resolve_options(GcpOptions, "gcp", [environment_layer("gcp", os.environ), keyword_layer(options)]))


def test_artifact_registry_repository_adc_token_and_push(gcp_emulator):
    from cloudml.providers.gcp.registry import ensure_repository, registry_credentials, target

    session = gcp_session(credentials=gcp_emulator.key_file)  # a key file, its tokens from the emulator's token_uri
    gcp_emulator.calls(clear=True)
    assert ensure_repository(session, "cloudml-ar-test") is True
    assert ensure_repository(session, "cloudml-ar-test") is False  # the second call creates nothing
    repository = session.http.get(f"{gcp_emulator.url}/v1/projects/{session.project}/locations/{session.location}/repositories/cloudml-ar-test").json()
    assert repository["format"] == "DOCKER" and repository["labels"] == {"cloudml-owned": "true"}
    assert [c["action"] for c in gcp_emulator.calls()].count("CreateRepository") == 1

    host, credentials = registry_credentials(session)
    assert host == gcp_emulator.registry_host and credentials.username == "oauth2accesstoken" and credentials.password
    assert_pushes(host, f"{session.project}/cloudml-ar-test/runtime", credentials)
    assert target(session, "cloudml-ar-test").repository == f"{session.project}/cloudml-ar-test/runtime"

    # Artifact Registry refuses a push into a repository never created.
    with pytest.raises(RegistryAuthError):
        push_small_image(RegistryClient(host, credentials=credentials), f"{session.project}/never-created/runtime", "v1")

    # Every permission this needs is in deploy_templates/gcp-roles.md.
    from conftest import REPO

    roles = (REPO / "deploy_templates" / "gcp-roles.md").read_text()
    permissions = {"GetRepository": "artifactregistry.repositories.get", "CreateRepository": "artifactregistry.repositories.create"}
    made = {permissions.get(c["action"], c["action"]) for c in gcp_emulator.calls() if c["action"] in permissions or "." in c["action"]}
    assert {"artifactregistry.repositories.uploadArtifacts", "artifactregistry.repositories.create"} <= made
    assert not sorted(p for p in made if p not in roles), f"gcp-roles.md lacks {sorted(p for p in made if p not in roles)}"


def test_artifact_registry_refuses_a_wrong_token(gcp_emulator):
    from cloudml.providers.gcp.registry import ensure_repository, registry_credentials

    session = gcp_session(credentials=gcp_emulator.key_file)
    ensure_repository(session, "cloudml-ar-test")
    host, _ = registry_credentials(session)
    with pytest.raises(RegistryAuthError) as refused:
        push_small_image(RegistryClient(host, credentials=Credentials("oauth2accesstoken", "ya29.expired")), f"{session.project}/cloudml-ar-test/runtime", "v2")
    assert "refused the credentials" in str(refused.value)


def test_artifact_registry_with_the_emulators_anonymous_credentials(gcp_emulator):
    from cloudml.providers.gcp.registry import target

    pushed = target(gcp_session())  # CLOUDML_GCP_CREDENTIALS=anonymous, as the emulator exports
    assert pushed.credentials == Credentials() and pushed.plain_http
    assert_pushes(pushed.host, pushed.repository, pushed.credentials)


def test_artifact_registry_errors_are_translated(gcp_emulator, tmp_path):
    from cloudml.providers.gcp.registry import ensure_repository, registry_credentials

    gcp_emulator.refuse_next("CreateRepository", status="PERMISSION_DENIED", message="Permission 'artifactregistry.repositories.create' denied")
    with pytest.raises(CloudMLError) as denied:
        ensure_repository(gcp_session(), "cloudml-denied")
    assert "permission denied while creating the Artifact Registry repository cloudml-denied" in str(denied.value)

    # A key the service does not know (deleted, or another account's): the token refresh fails, with what to do.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    revoked = tmp_path / "key.json"
    revoked.write_text(json.dumps({**json.loads(open(gcp_emulator.key_file).read()), "private_key": other}))
    with pytest.raises(CloudMLError) as refused:
        registry_credentials(gcp_session(credentials=str(revoked)))
    assert "refused the credentials" in str(refused.value) and "gcloud auth application-default login" in refused.value.hint


def test_an_emulator_without_docker_registry_starts_and_says_so(tmp_path, monkeypatch):
    """docker-registry is a Debian package, not a Python one: without it the emulator still serves
    the rest of the cloud, and its log says why there is no registry."""
    import os
    import sys

    from cloudml.emulators.aws import AwsEmulator

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    log = tmp_path / "emulator.log"
    with AwsEmulator(log_path=log) as aws:
        assert aws.registry_host is None
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        import boto3

        assert boto3.client("ecr").create_repository(repositoryName="cloudml/runtime")["repository"]["repositoryName"] == "cloudml/runtime"
    assert "docker-registry is not installed" in log.read_text()
