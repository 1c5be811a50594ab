"""`cloudml image build` and `cloudml image list`: the serving runtime image a model is served with,
built without Docker and pushed to a registry of one's own (--push) or to the repository a
cloud's deploys use (--provider), and read back; `package --container` is gone."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import warnings

import pytest
from conftest import DEBS, WHEELHOUSE, require_image_assets, run_cli, start_registry

from cloudml.errors import ExitCode
from cloudml.images import debian, runtime

needs_registry = pytest.mark.skipif(not (shutil.which("docker-registry") and shutil.which("skopeo")),
                                    reason="needs docker-registry and skopeo (Debian packages)")


def _json(result: subprocess.CompletedProcess, code: int = 0) -> dict:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    [line] = [result.stdout] if code == 0 else result.stdout.splitlines()  # a failure: exactly one JSON line
    return json.loads(line)


# -- refused before anything is packaged or pushed -------------------------------------------------


@pytest.mark.parametrize(("args", "says"), [
    (["--backend", "onnx", "--push", "127.0.0.1:5000/cloudml/runtime", "--provider", "aws"], "both --push and --provider"),
    (["--backend", "onnx"], "neither --push nor --provider"),
    (["--backend", "onnx", "--push", "127.0.0.1:5000/cloudml/runtime:v1"], "names a tag"),
    (["--backend", "onnx", "--push", f"127.0.0.1:5000/cloudml/runtime@sha256:{'a' * 64}"], "names a digest"),
    (["--backend", "onnx", "--push", "127.0.0.1:5000/Cloudml/Runtime"], "is not an image reference"),
    (["--push", "127.0.0.1:5000/cloudml/runtime"], "neither MODEL nor --backend"),
    (["model.keras", "--backend", "onnx", "--push", "127.0.0.1:5000/cloudml/runtime"], "both MODEL and --backend"),
    (["model.keras", "--backend-version", "1.20.0", "--push", "127.0.0.1:5000/cloudml/runtime"], "--backend-version is for --backend"),
    (["--backend", "onnx", "--provider", "aws", "--plain-http"], "--plain-http is for --push"),
    (["--backend", "torch", "--push", "127.0.0.1:5000/cloudml/runtime"], "no runtime image serves the backend 'torch'"),
    (["--backend", "onnx", "--provider", "local"], "provider 'local' has no container registry"),
])
def test_image_build_refuses_bad_arguments_with_exit_2(args, says, tmp_path):
    error = _json(run_cli("image", "build", *args, "--output", "json", home=tmp_path), ExitCode.BAD_INPUT)
    assert says in error["message"], error
    assert error["hint"] and error["exit_code"] == ExitCode.BAD_INPUT
    text = run_cli("image", "build", *args, home=tmp_path)
    assert text.returncode == ExitCode.BAD_INPUT and says in text.stderr and not text.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["127.0.0.1:5000/cloudml/runtime", "--provider", "aws"], "both REPO and --provider"),
    ([], "neither REPO nor --provider"),
    (["127.0.0.1:5000/cloudml/runtime:latest"], "names a tag"),
])
def test_image_list_refuses_bad_arguments_with_exit_2(args, says, tmp_path):
    error = _json(run_cli("image", "list", *args, "--output", "json", home=tmp_path), ExitCode.BAD_INPUT)
    assert says in error["message"] and error["hint"], error


def test_package_container_is_refused_and_points_to_image_build(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the flag is refused first")
    error = _json(run_cli("package", model, "--out", tmp_path / "pkg", "--container", "--output", "json"), ExitCode.BAD_INPUT)
    assert "--container" in error["message"] and "cloudml image build" in error["hint"], error
    assert not (tmp_path / "pkg").exists()


def test_an_unreachable_registry_is_reported_as_such(tmp_path):
    from conftest import free_port

    error = _json(run_cli("image", "list", f"127.0.0.1:{free_port()}/cloudml/runtime", "--output", "json", home=tmp_path), ExitCode.DEPLOY_FAILED)
    assert error["error"] == "RegistryUnreachable" and "cannot reach the registry" in error["message"], error


# -- logins ----------------------------------------------------------------------------------------


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        except (ImportError, AttributeError):
            bcrypt = pytest.importorskip("bcrypt", reason="no bcrypt to write the registry's htpasswd file")
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.slow
@needs_registry
def test_logins_come_from_the_auth_files_or_the_variables(tmp_path):
    root = tmp_path / "registry"
    root.mkdir()
    (root / "htpasswd").write_text(f"pusher:{_bcrypt('s3cret')}\n")
    host, proc = start_registry(root, f"auth:\n  htpasswd:\n    realm: cloudml-test\n    path: {root / 'htpasswd'}\n")
    try:
        user_home = tmp_path / "user"
        (user_home / ".docker").mkdir(parents=True)
        clean = {"HOME": str(user_home), "REGISTRY_AUTH_FILE": "", "XDG_RUNTIME_DIR": "", "XDG_CONFIG_HOME": "", "DOCKER_CONFIG": "",
                 "CLOUDML_REGISTRY_USERNAME": "", "CLOUDML_REGISTRY_PASSWORD": ""}
        listing = lambda **env: run_cli("image", "list", f"{host}/cloudml/runtime", "--output", "json", env={**clean, **env}, home=tmp_path)

        refused = _json(listing(), ExitCode.DEPLOY_FAILED)
        assert refused["error"] == "RegistryAuthError" and "credentials" in refused["hint"], refused

        auth = lambda user, password: base64.b64encode(f"{user}:{password}".encode()).decode()
        (user_home / ".docker" / "config.json").write_text(json.dumps({"auths": {f"http://{host}": {"auth": auth("pusher", "s3cret")}}}))
        assert _json(listing()) == {"repository": f"{host}/cloudml/runtime", "images": [], "other_tags": [], "provider": None}

        # $REGISTRY_AUTH_FILE (podman's) comes first; a wrong password there is refused, not skipped.
        podman = tmp_path / "auth.json"
        podman.write_text(json.dumps({"auths": {host: {"auth": auth("pusher", "wrong")}}}))
        assert _json(listing(REGISTRY_AUTH_FILE=str(podman)), ExitCode.DEPLOY_FAILED)["error"] == "RegistryAuthError"
        # The variables come before any file.
        assert _json(listing(REGISTRY_AUTH_FILE=str(podman), CLOUDML_REGISTRY_USERNAME="pusher", CLOUDML_REGISTRY_PASSWORD="s3cret"))["images"] == []
        half = _json(listing(CLOUDML_REGISTRY_USERNAME="pusher"), ExitCode.BAD_INPUT)
        assert "CLOUDML_REGISTRY_PASSWORD" in half["message"], half

        podman.write_text("{not json")
        broken = _json(listing(REGISTRY_AUTH_FILE=str(podman)), ExitCode.BAD_INPUT)
        assert str(podman) in broken["message"], broken
    finally:
        proc.terminate()
        proc.wait(10)


# -- built, pushed and listed ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry holding the offline stand-in for python:3.11-slim."""
    require_image_assets()
    if not shutil.which("docker-registry"):
        pytest.skip("needs docker-registry")
    root = tmp_path_factory.mktemp("image-cli-registry")
    host, proc = start_registry(root)
    debian.python_base_image(f"{host}/library/python:3.11-slim", cache=DEBS, work_dir=root)
    yield host, f"{host}/library/python:3.11-slim"
    proc.terminate()
    proc.wait(10)


def _skopeo_inspect(reference: str, *flags: str) -> dict:
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *flags, f"docker://{reference}"], capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    return json.loads(inspected.stdout)


@pytest.mark.slow
@needs_registry
def test_image_build_pushes_the_models_runtime_image_once_and_image_list_shows_it(registry, seed_models, other_cnn, tmp_path):
    import onnxruntime

    host, base = registry
    repo = f"{host}/cloudml/runtime"
    build = lambda *args: run_cli("image", "build", *args, "--push", repo, "--base-image", base, "--wheelhouse", WHEELHOUSE,
                                  "--output", "json", home=tmp_path, timeout=900)
    first = build(seed_models["cnn"].path)
    image = _json(first)
    # The CNN's ONNX conversion verifies, so (as a deploy decides) ONNX Runtime serves it.
    assert (image["backend"], image["backend_version"], image["model"]["backend"]) == ("onnx", onnxruntime.__version__, "onnx"), image
    assert image["built"] is True and image["bytes_uploaded"] > 1_000_000, image
    assert image["reference"] == f"{repo}@{image['digest']}" and image["tagged"] == f"{repo}:{image['tag']}@{image['digest']}"
    assert image["tag"].startswith(f"{runtime.__version__}-onnxruntime-{onnxruntime.__version__}-cpu-")
    assert {b["action"] for b in image["blobs"]} >= {"uploaded"}
    # Progress on stderr: the build and every blob pushed or skipped with its size.
    assert "Pushing" in first.stderr and "bytes): uploaded" in first.stderr, first.stderr

    info = _skopeo_inspect(image["reference"])
    assert info["Digest"] == image["digest"] and info["Labels"]["io.cloudml.backend"] == "onnx" and info["Architecture"] == "amd64"

    # Another model on the same runtime: found by its tag, nothing built or pushed, the same digest.
    again = _json(build(other_cnn[0]))
    assert (again["built"], again["bytes_uploaded"], again["digest"], again["blobs"]) == (False, 0, image["digest"], []), again
    # ... and so is the image built for the backend alone, without a model (a CI pre-build).
    alone = _json(build("--backend", "onnx"))
    assert (alone["built"], alone["digest"], alone["model"]) == (False, image["digest"], None), alone
    text = run_cli("image", "build", "--backend", "onnx", "--push", repo, "--base-image", base, "--wheelhouse", WHEELHOUSE, home=tmp_path)
    assert text.returncode == 0 and f"image:   {image['reference']}" in text.stdout and "nothing built or pushed" in text.stdout, text.stdout

    # A tag that is no cloudml runtime image is listed apart.
    copied = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{base}", f"docker://{repo}:not-cloudml"],
                            capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    listed = _json(run_cli("image", "list", repo, "--output", "json", home=tmp_path))
    [row] = listed["images"]
    assert (row["tag"], row["digest"], row["backend"], row["backend_version"], row["cloudml_version"]) == (
        image["tag"], image["digest"], "onnx", onnxruntime.__version__, runtime.__version__), row
    manifest = _skopeo_inspect(image["reference"], "--raw")
    assert row["size"] == sum(layer["size"] for layer in manifest["layers"]) and row["labels"]["io.cloudml.runtime"] == "onnxruntime"
    assert listed["other_tags"] == ["not-cloudml"] and listed["repository"] == repo
    # The registry's tag list, one tag a page: the Link header's next pages are followed.
    from cloudml.images.registry import RegistryClient

    assert sorted(RegistryClient(host).list_tags("cloudml/runtime", page_size=1)) == sorted([image["tag"], "not-cloudml"])
    table = run_cli("image", "list", repo, home=tmp_path)
    assert table.returncode == 0 and image["tag"] in table.stdout and "onnx" in table.stdout and "not-cloudml" in table.stdout, table.stdout


@pytest.fixture
def ecr_base(aws_emulator, tmp_path):
    """The offline python:3.11-slim stand-in, pushed into the emulated ECR as library/python."""
    require_image_assets()
    if aws_emulator.registry_host is None:
        pytest.skip("the AWS emulator has no registry (docker-registry did not start)")
    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository, registry_credentials
    from cloudml.providers.aws.session import AwsSession

    session = AwsSession(AwsOptions())
    ensure_repository(session, "library/python")
    host, credentials = registry_credentials(session)
    base = f"{host}/library/python:3.11-slim"
    debian.python_base_image(base, cache=DEBS, credentials=credentials, plain_http=True, work_dir=tmp_path)
    return host, base, credentials


@pytest.mark.slow
@needs_registry
def test_image_build_for_aws_pushes_into_the_ecr_repository_the_deploy_then_finds(aws_emulator, ecr_base, seed_models, home):
    import boto3

    host, base, credentials = ecr_base
    cnn = seed_models["cnn"]
    image = _json(run_cli("image", "build", cnn.path, "--provider", "aws", "-o", f"base_image={base}", "--wheelhouse", WHEELHOUSE,
                          "--output", "json", home=home, timeout=900))
    assert image["reference"] == f"{host}/cloudml/runtime@{image['digest']}" and image["provider"] == "aws" and image["backend"] == "onnx", image
    info = _skopeo_inspect(image["reference"], "--creds", f"{credentials.username}:{credentials.password}")
    assert info["Digest"] == image["digest"]
    listed = _json(run_cli("image", "list", "--provider", "aws", "--output", "json", home=home))
    assert image["digest"] in [row["digest"] for row in listed["images"]] and listed["repository"] == f"{host}/cloudml/runtime"

    # The deploy that follows finds what CI pre-pushed: nothing built, served pinned by that digest.
    deployed = run_cli("deploy", cnn.path, "--name", "cnn-prebuilt", "--provider", "aws", "-o", "build_image=true", "-o", f"base_image={base}",
                       "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
    result = _json(deployed)
    assert "found, nothing pushed" in deployed.stderr and "built and pushed" not in deployed.stderr, deployed.stderr
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=result["deployment"]["details"]["endpoint_config"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == image["reference"]
    assert run_cli("delete", "cnn-prebuilt", "--provider", "aws", "--purge", home=home).returncode == 0
