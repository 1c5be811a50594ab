"""A cloud deploy with no image option, of a model no prebuilt image serves (the seed CNN, saved by
TensorFlow 2.21): the deploy builds the cloudml runtime image without Docker, pushes it into the
cloud's registry (each emulator's is a real CNCF registry behind the cloud's auth), and the
Model/Deployment names it, pinned by digest; a second model finds the image and pushes nothing,
and a rebuild from scratch gives the same digest.

The emulated hosting then runs THAT image as a real container (podman here): on SageMaker as
`<image> serve` with model.tar.gz unpacked at /opt/ml/model, on Vertex AI with the AIP_* variables
(the container downloads the model from the GCS emulator itself), on Azure ML with the model
mounted at AZUREML_MODEL_DIR. Checked as a user would: `podman ps` shows a container of the
image, the process listening on the endpoint's port is uid 10001, predictions equal the
in-process model's and the container's output reaches the cloud's log service. Without an engine
(`CLOUDML_CONTAINER_ENGINE=none`) the emulator serves with the host's runtime and its log says so."""

from __future__ import annotations

import json
import shutil
import subprocess

import boto3
import pytest
from conftest import DEBS, PODMAN_FLAGS, WHEELHOUSE, require_image_assets, rows_close, run_cli, sagemaker_image
from test_aws_provider import assert_policy_covers

from cloudml.images import debian

FALLBACK = "with the host's cloudml runtime instead"
SERVING = "loaded and warmed up"  # the runtime's line once the model serves

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("docker-registry") and shutil.which("skopeo")),
                       reason="needs docker-registry and skopeo (Debian packages)"),
]


def _podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def _needs_podman() -> None:
    if not shutil.which("podman"):
        pytest.skip("podman is not installed: the emulators serve with the host's cloudml runtime")


def _listener_uid(port: int) -> int | None:
    """The uid owning the socket listening on `port` (the container shares the host network)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for row in list(handle)[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return int(fields[7])
    return None


def _assert_runs_in_a_container(image: str, port: int) -> None:
    """A running container of `image` (by digest) serves `port`, as the image's user 10001."""
    listed = _podman("ps", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    ours = [c for c in json.loads(listed.stdout or "[]") if c.get("Image") == image]
    assert ours, f"no running container of {image}: {listed.stdout}"
    assert _listener_uid(port) == 10001, f"port {port} is served by uid {_listener_uid(port)}"


def _served_log(provider: str, name: str, home) -> str:
    """`cloudml logs` (CloudWatch, Cloud Logging, the deployment's get_logs) once the model serves."""
    import time

    deadline = time.monotonic() + 30
    while True:  # the emulators ship container output every half second
        result = run_cli("logs", name, "--provider", provider, "--tail", "500", home=home)
        assert result.returncode == 0, result.stdout + result.stderr
        if SERVING in result.stdout or time.monotonic() > deadline:
            return result.stdout
        time.sleep(1)


def _remove_image(image: str) -> None:
    if shutil.which("podman"):
        _podman("rmi", image, timeout=120)  # leave the machine's image store as it was


def _push_ecr_base(work_dir):
    """The offline python:3.11-slim stand-in, pushed into the emulated ECR (the one the
    environment points at) as library/python."""
    from cloudml.providers.aws.options import AwsOptions
    from cloudml.providers.aws.registry import ensure_repository, registry_credentials
    from cloudml.providers.aws.session import AwsSession

    session = AwsSession(AwsOptions())
    ensure_repository(session, "library/python")
    host, credentials = registry_credentials(session)
    base = f"{host}/library/python:3.11-slim"
    debian.python_base_image(base, cache=DEBS, credentials=credentials, plain_http=True, work_dir=work_dir)
    return host, base, credentials


@pytest.fixture
def ecr_base(aws_emulator, tmp_path):
    require_image_assets()
    if aws_emulator.registry_host is None:
        pytest.skip("the AWS emulator has no registry (docker-registry did not start)")
    return _push_ecr_base(tmp_path)


def own_base(ecr_base, tag: str, work_dir) -> str:
    """The offline base pushed again under a tag of its own: the base's name is part of the runtime
    image's tag, so a test that must see the image built and pushed does not find one another
    test left in the session's registry."""
    host, _, credentials = ecr_base
    base = f"{host}/library/python:{tag}"
    debian.python_base_image(base, cache=DEBS, credentials=credentials, plain_http=True, work_dir=work_dir)
    return base


def _deploy(model, name, base, home):
    result = run_cli("deploy", model, "--name", name, "--provider", "aws", "-o", f"base_image={base}",
                     "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout), result.stderr


def test_build_image_pushes_the_runtime_image_to_ecr_once_and_sagemaker_runs_it(aws_emulator, ecr_base, seed_models, other_cnn, home, tmp_path):
    import cloudml

    _needs_podman()
    host, _, credentials = ecr_base
    base = own_base(ecr_base, "3.11-slim-ecr-once", tmp_path)
    cnn = seed_models["cnn"]
    aws_emulator.calls(clear=True)
    first, log = _deploy(cnn.path, "cnn-built", base, home)
    assert first["action"] == "created", first
    image = sagemaker_image(first["deployment"])
    try:
        assert image.startswith(f"{host}/cloudml/runtime@sha256:"), image
        assert "built and pushed" in log, log

        inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{credentials.username}:{credentials.password}",
                                    f"docker://{image}"], capture_output=True, text=True, timeout=60)
        assert inspected.returncode == 0, inspected.stderr
        info = json.loads(inspected.stdout)
        assert info["Digest"] == image.split("@")[1]
        assert info["Labels"]["io.cloudml.backend"] == "onnx" and info["Architecture"] == "amd64"

        deployer = cloudml.get_deployer("aws", poll_interval=0.5)
        assert rows_close(deployer.predict("cnn-built", instances=cnn.instances).predictions, cnn.reference())
        [instance] = [f for f in aws_emulator.fleet() if f["endpoint"] == "cnn-built"]
        _assert_runs_in_a_container(image, instance["port"])
        served = _served_log("aws", "cnn-built", home)
        assert SERVING in served and FALLBACK not in served, served

        # Another model: the same runtime image, found by its tag, nothing built or pushed.
        second, log = _deploy(other_cnn[0], "cnn-built-2", base, home)
        assert second["action"] == "created", second
        assert sagemaker_image(second["deployment"]) == image
        assert "found, nothing pushed" in log and "built and pushed" not in log, log
        assert rows_close(deployer.predict("cnn-built-2", instances=cnn.instances).predictions, other_cnn[1])
        assert_policy_covers(aws_emulator.calls())  # the build and push need no permission beyond the policy file

        # From scratch (a repository with nothing in it): every layer built again, the same digest.
        boto3.client("ecr").create_repository(repositoryName="cloudml/runtime-rebuild")
        rebuilt = run_cli("image", "build", other_cnn[0], "--push", f"{host}/cloudml/runtime-rebuild", "--base-image", base,
                          "--wheelhouse", str(WHEELHOUSE), "--output", "json", home=home, timeout=900,
                          env={"CLOUDML_REGISTRY_USERNAME": credentials.username, "CLOUDML_REGISTRY_PASSWORD": credentials.password})
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        again = json.loads(rebuilt.stdout)
        assert again["built"] is True and again["digest"] == image.split("@")[1], again
        for name in ("cnn-built", "cnn-built-2"):
            assert deployer.delete(name, purge=True) is True
        listed = _podman("ps", "--format", "json")
        assert not [c for c in json.loads(listed.stdout or "[]") if c.get("Image") == image], "a deleted endpoint's container still runs"
    finally:
        _remove_image(image)


def test_without_a_container_engine_the_emulator_serves_the_built_image_with_the_host_runtime(seed_models, home, tmp_path, monkeypatch):
    import cloudml
    from cloudml.emulators.aws import AwsEmulator

    require_image_assets()
    monkeypatch.setenv("CLOUDML_CONTAINER_ENGINE", "none")
    with AwsEmulator(provisioning_delay=0.2) as emulator:
        for key, value in emulator.env.items():
            monkeypatch.setenv(key, value)
        if emulator.registry_host is None:
            pytest.skip("the AWS emulator has no registry (docker-registry did not start)")
        _, base, _ = _push_ecr_base(tmp_path)
        cnn = seed_models["cnn"]
        deployed, _ = _deploy(cnn.path, "cnn-hosted", base, home)
        image = sagemaker_image(deployed["deployment"])
        assert image.startswith(f"{emulator.registry_host}/cloudml/runtime@sha256:"), image
        deployer = cloudml.get_deployer("aws", poll_interval=0.5)
        assert rows_close(deployer.predict("cnn-hosted", instances=cnn.instances).predictions, cnn.reference())
        served = _served_log("aws", "cnn-hosted", home)
        assert "no container engine (CLOUDML_CONTAINER_ENGINE=none)" in served and FALLBACK in served, served
        assert deployer.delete("cnn-hosted", purge=True) is True


def test_image_uri_and_build_image_together_are_refused(aws_emulator, seed_models, home):
    result = run_cli("deploy", seed_models["cnn"].path, "--name", "cnn-both", "--provider", "aws", "-o", "build_image=true",
                     "-o", "image_uri=123.dkr.ecr.us-east-1.amazonaws.com/x:1", "--output", "json", home=home)
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "image_uri and build_image" in error["message"] and "build_image" in error["hint"]
    assert not (home / "aws-packages").exists()


def test_build_image_on_vertex_pushes_to_artifact_registry_and_the_model_runs_it(gcp_emulator, vertex, seed_models, other_cnn, home, tmp_path):
    import os

    _needs_podman()
    from cloudml.providers.gcp.options import GcpOptions
    from cloudml.providers.gcp.registry import target
    from cloudml.providers.gcp.session import GcpSession
    from cloudml.providers.options import environment_layer, resolve_options

    require_image_assets()
    if gcp_emulator.registry_host is None:
        pytest.skip("the GCP emulator has no registry (docker-registry did not start)")
    # The base next to the runtime images, in the repository cloudml makes (the emulator's anonymous credentials, as the CLI gets them).
    pushed = target(GcpSession(resolve_options(GcpOptions, "gcp", [environment_layer("gcp", os.environ)])))
    base = f"{pushed.host}/{pushed.repository.rsplit('/', 1)[0]}/python:3.11-slim"
    debian.python_base_image(base, cache=DEBS, credentials=pushed.credentials, plain_http=True, work_dir=tmp_path)

    cnn = seed_models["cnn"]
    result = run_cli("deploy", cnn.path, "--name", "cnn-vbuilt", "--provider", "gcp", "-o", f"base_image={base}",
                     "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    out = json.loads(result.stdout)
    assert out["action"] == "created"
    deployment = out["deployment"]
    [model] = vertex.Model.list(filter='labels.cloudml-deployment="cnn-vbuilt"')
    image = model.gca_resource.container_spec.image_uri
    assert image.startswith(f"{pushed.host}/{pushed.repository}@sha256:"), image
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"], capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == image.split("@")[1]
    try:
        predicted = run_cli("predict", "cnn-vbuilt", json.dumps(cnn.instances), "--provider", "gcp", "--output", "json", home=home)
        assert predicted.returncode == 0, predicted.stdout + predicted.stderr
        assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
        [node] = [f for f in gcp_emulator.fleet() if f["deployed_model_id"] == deployment["details"]["deployed_model_id"]]
        _assert_runs_in_a_container(image, node["port"])
        served = _served_log("gcp", "cnn-vbuilt", home)
        assert SERVING in served and FALLBACK not in served, served

        # Another model: the same image, found by its tag, nothing pushed.
        second = run_cli("deploy", other_cnn[0], "--name", "cnn-vbuilt-2", "--provider", "gcp", "-o", f"base_image={base}",
                         "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "found, nothing pushed" in second.stderr and "built and pushed" not in second.stderr, second.stderr
        [model_2] = vertex.Model.list(filter='labels.cloudml-deployment="cnn-vbuilt-2"')
        assert model_2.gca_resource.container_spec.image_uri == image
        predicted = run_cli("predict", "cnn-vbuilt-2", json.dumps(cnn.instances), "--provider", "gcp", "--output", "json", home=home)
        assert rows_close(json.loads(predicted.stdout)["predictions"], other_cnn[1])
        for name in ("cnn-vbuilt", "cnn-vbuilt-2"):
            assert run_cli("delete", name, "--provider", "gcp", "--purge", home=home).returncode == 0
    finally:
        _remove_image(image)


def test_build_image_on_azure_ml_pushes_to_the_workspace_registry_and_the_deployment_runs_it(azure_emulator, ml, seed_models, other_cnn, home,
                                                                                            tmp_path):
    from cloudml.providers.azure.registry import registry_credentials

    _needs_podman()
    require_image_assets()
    host, credentials = registry_credentials(ml, azure_emulator.workspace, resource_manager_url=azure_emulator.url)
    base = f"{host}/library/python:3.11-slim"  # ACR makes a repository at its first push
    debian.python_base_image(base, cache=DEBS, credentials=credentials, plain_http=True, work_dir=tmp_path)

    cnn = seed_models["cnn"]
    result = run_cli("deploy", cnn.path, "--name", "cnn-abuilt", "--provider", "azure", "-o", f"base_image={base}",
                     "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert json.loads(result.stdout)["action"] == "created"
    [deployment] = ml.online_deployments.list("cnn-abuilt")
    environment = ml.environments.get(*deployment.environment.split("/environments/")[1].split("/versions/"))
    assert environment.image.startswith(f"{host}/cloudml/runtime@sha256:"), environment.image
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{credentials.username}:{credentials.password}",
                                f"docker://{environment.image}"], capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == environment.image.split("@")[1]
    try:
        predicted = run_cli("predict", "cnn-abuilt", json.dumps(cnn.instances), "--provider", "azure", "--output", "json", home=home)
        assert predicted.returncode == 0, predicted.stdout + predicted.stderr
        assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
        [instance] = [f for f in azure_emulator.fleet() if f["endpoint"] == "cnn-abuilt" and f["state"] == "Succeeded"]
        _assert_runs_in_a_container(environment.image, instance["port"])
        served = _served_log("azure", "cnn-abuilt", home)
        assert SERVING in served and FALLBACK not in served, served

        # Another model: the same image, found by its tag, nothing pushed.
        second = run_cli("deploy", other_cnn[0], "--name", "cnn-abuilt-2", "--provider", "azure", "-o", f"base_image={base}",
                         "-o", f"wheelhouse={WHEELHOUSE}", "--output", "json", home=home, timeout=900)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "found, nothing pushed" in second.stderr and "built and pushed" not in second.stderr, second.stderr
        [deployment_2] = ml.online_deployments.list("cnn-abuilt-2")
        environment_2 = ml.environments.get(*deployment_2.environment.split("/environments/")[1].split("/versions/"))
        assert environment_2.image == environment.image
        predicted = run_cli("predict", "cnn-abuilt-2", json.dumps(cnn.instances), "--provider", "azure", "--output", "json", home=home)
        assert rows_close(json.loads(predicted.stdout)["predictions"], other_cnn[1])
        for name in ("cnn-abuilt", "cnn-abuilt-2"):
            assert run_cli("delete", name, "--provider", "azure", "--purge", home=home).returncode == 0
    finally:
        _remove_image(environment.image)


def test_a_model_archive_reaching_outside_its_folder_fails_the_endpoint_before_any_container_runs(aws_emulator, tmp_path):
    """SageMaker unpacks model.tar.gz for the container: a member outside /opt/ml/model is refused."""
    import io
    import tarfile
    import time

    _needs_podman()
    if aws_emulator.registry_host is None:
        pytest.skip("the AWS emulator has no registry (docker-registry did not start)")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        evil = tarfile.TarInfo("../../escaped.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    boto3.client("s3").put_object(Bucket=aws_emulator.bucket, Key="evil/model.tar.gz", Body=archive.getvalue())
    sm = boto3.client("sagemaker")
    image = f"{aws_emulator.registry_host}/cloudml/runtime@sha256:{'0' * 64}"  # in the emulator's registry: a container would run it
    sm.create_model(ModelName="evil-model", ExecutionRoleArn=aws_emulator.role_arn,
                    PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{aws_emulator.bucket}/evil/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="evil-config", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "evil-model", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="evil", EndpointConfigName="evil-config")
    try:
        deadline = time.monotonic() + 60
        while (status := sm.describe_endpoint(EndpointName="evil"))["EndpointStatus"] == "Creating" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status["EndpointStatus"] == "Failed", status
        events = boto3.client("logs").filter_log_events(logGroupName="/aws/sagemaker/Endpoints/evil")["events"]
        text = "\n".join(e["message"] for e in events)
        assert "cannot hand the model to the container" in text and "escaped.txt" in text, text
    finally:
        sm.delete_endpoint(EndpointName="evil")
        sm.delete_endpoint_config(EndpointConfigName="evil-config")
        sm.delete_model(ModelName="evil-model")


def test_a_package_made_for_onnx_runtime_from_a_model_an_old_image_serves_gets_the_cloudml_image(aws_emulator, ecr_base, seed_models, home, tmp_path):
    """A package folder made with `--runtime onnx` whose manifest names TensorFlow 2.16.1 (which a
    SageMaker TF Serving image serves): the deploy serves it with the cloudml image (the TF
    Serving image cannot serve model.onnx), and predictions are the model's."""
    from conftest import relabelled_savedmodel

    host, base, _ = ecr_base
    cnn = seed_models["cnn"]
    saved = relabelled_savedmodel(cnn.path, tmp_path / "tf216", "2.16.1")
    made = run_cli("package", saved, "--out", tmp_path / "out", "--runtime", "onnx", "--output", "json", home=home, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    package = tmp_path / "out" / "model"  # the package folder (beside it, model.tar.gz)
    manifest = json.loads((package / "cloudml-manifest.json").read_text())
    # Packaging records the TensorFlow that saved the SavedModel (the relabelled 2.16.1).
    assert manifest["runtime"]["backend"] == "onnx" and manifest["tensorflow_version"] == "2.16.1", manifest

    deployed, _ = _deploy(package, "cnn-onnx-pkg", base, home)
    image = sagemaker_image(deployed["deployment"])
    try:
        assert "tensorflow-inference" not in image and not image.startswith("763104351884."), image
        assert image.startswith(f"{host}/cloudml/runtime@sha256:"), image
        predicted = run_cli("predict", "cnn-onnx-pkg", json.dumps(cnn.instances), "--provider", "aws", "--output", "json", home=home)
        assert predicted.returncode == 0, predicted.stdout + predicted.stderr
        assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
        assert run_cli("delete", "cnn-onnx-pkg", "--provider", "aws", "--purge", home=home).returncode == 0
    finally:
        _remove_image(image)
