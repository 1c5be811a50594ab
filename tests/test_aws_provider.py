"""What only the `aws` provider does, against the offline AWS (cloudml.emulators.aws), through the
CLI and the Python API, with the seed CNN: the resources and settings a deploy makes, how an update
swaps them, autoscaling, IAM, image choice, the emulator's own rules. What every provider promises
(redeploys, failed rollouts, refusals, foreign endpoints, missing names) is in tests/contract.
Resources are checked with plain boto3 clients, the way a user would look at their account."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from conftest import next_matching, read_exports, relabelled_savedmodel, rows_close, run_cli, sagemaker_image
from contract.targets import AWS_IMAGE, Aws

pytestmark = pytest.mark.slow

IMAGE = AWS_IMAGE
DEFAULT_BUCKET = "cloudml-123456789012-us-east-1"


def deploy(model, name, *args, home, expect=0):
    result = run_cli("deploy", model, "--name", name, "--provider", "aws", "-o", f"image_uri={IMAGE}", *args, "--output", "json", home=home)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout) if expect == 0 else result


def tagged(name: str) -> dict[str, list[str]]:
    """Every SageMaker resource, scaling target and S3 object that carries this deployment's tag."""
    return Aws(home=Path()).resources(name)


def assert_policy_covers(calls: list[dict[str, str]]) -> set[str]:
    """Every AWS call cloudml made is allowed by deploy_templates/aws-iam-policy.json."""
    import fnmatch

    from conftest import REPO

    policy = json.loads((REPO / "deploy_templates" / "aws-iam-policy.json").read_text())
    allowed = [a.lower() for st in policy["Statement"] if st["Effect"] == "Allow" for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
    made = {c["action"] for c in calls if "cloudml" in c["user_agent"]} - {"sts:GetCallerIdentity"}  # needs no permission
    missing = sorted(a for a in made if not any(fnmatch.fnmatchcase(a.lower(), pattern) for pattern in allowed))
    assert not missing, f"aws-iam-policy.json lacks {missing}"
    return made


NOTHING = {"models": [], "configs": [], "endpoints": [], "scaling": [], "objects": []}


def test_what_a_deploy_makes_and_how_an_update_swaps_it(aws_emulator, seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    sm = boto3.client("sagemaker")
    aws_emulator.calls(clear=True)
    created = deploy(cnn.path, "cnn-cli", "--min-replicas", "2", "--max-replicas", "4", "-t", "team=vision", home=home)
    assert created["action"] == "created"
    dep = created["deployment"]
    assert dep["status"] == "healthy" and dep["provider"] == "aws" and dep["tags"] == {"team": "vision"}
    assert dep["endpoint_url"].endswith("/endpoints/cnn-cli/invocations")

    # The artifact: content-addressed, encrypted, in a private bucket cloudml created.
    s3 = boto3.client("s3")
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix="cloudml/cnn-cli/")["Contents"]]
    head = s3.head_object(Bucket=DEFAULT_BUCKET, Key=key)
    assert key.endswith("/model.tar.gz") and head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["cloudml-sha256"].startswith("sha256:")
    assert s3.get_public_access_block(Bucket=DEFAULT_BUCKET)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    rule = s3.get_bucket_encryption(Bucket=DEFAULT_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # Model, EndpointConfig, Endpoint, scaling target: the settings asked for, tagged.
    endpoint = sm.describe_endpoint(EndpointName="cnn-cli")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [variant] = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 2)
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{DEFAULT_BUCKET}/{key}"
    assert model["ExecutionRoleArn"] == aws_emulator.role_arn
    model_hash = dep["model_hash"]
    assert variant["ModelName"].startswith("cnn-cli-" + model_hash.split(":")[1][:8])
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert tags["cloudml:deployment"] == "cnn-cli" and tags["cloudml:model-hash"] == model_hash and tags["team"] == "vision"
    [target] = boto3.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == ("endpoint/cnn-cli/variant/primary", 2, 4)

    # Autoscaling moves the endpoint to 3 instances; an update keeps them and swaps the config.
    sm.update_endpoint_weights_and_capacities(EndpointName="cnn-cli", DesiredWeightsAndCapacities=[{"VariantName": "primary", "DesiredInstanceCount": 3}])
    updated = deploy(other_cnn[0], "cnn-cli", "--min-replicas", "2", "--max-replicas", "4", home=home)
    assert updated["action"] == "updated" and updated["deployment"]["model_hash"] != model_hash
    after = sm.describe_endpoint(EndpointName="cnn-cli")
    assert after["EndpointConfigName"] != endpoint["EndpointConfigName"]
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    new_config = sm.describe_endpoint_config(EndpointConfigName=after["EndpointConfigName"])
    assert new_config["ProductionVariants"][0]["InitialInstanceCount"] == 3
    result = run_cli("predict", "cnn-cli", json.dumps(cnn.instances), "--provider", "aws", "--output", "json", home=home)
    assert rows_close(json.loads(result.stdout)["predictions"], other_cnn[1])
    # The previous Model and EndpointConfig are gone; autoscaling is still registered.
    resources = tagged("cnn-cli")
    assert resources["configs"] == [after["EndpointConfigName"]] and len(resources["models"]) == 1
    assert resources["scaling"] == ["endpoint/cnn-cli/variant/primary"]

    logs = run_cli("logs", "cnn-cli", "--provider", "aws", "--tail", "50", home=home)
    assert logs.returncode == 0 and "loaded and warmed up" in logs.stdout  # from CloudWatch Logs

    # delete: everything but the artifact (kept for a redeploy); --purge takes that too.
    assert run_cli("delete", "cnn-cli", "--provider", "aws", home=home).returncode == 0
    left = tagged("cnn-cli")
    assert {k: v for k, v in left.items() if k != "objects"} == {k: [] for k in NOTHING if k != "objects"}
    assert len(left["objects"]) == 2  # both versions' model.tar.gz
    purged = run_cli("delete", "cnn-cli", "--provider", "aws", "--purge", home=home)
    assert purged.returncode == 0 and tagged("cnn-cli") == NOTHING
    made = assert_policy_covers(aws_emulator.calls())
    assert {"sagemaker:UpdateEndpoint", "s3:PutObject", "application-autoscaling:RegisterScalableTarget", "logs:GetLogEvents",
            "sagemaker:InvokeEndpoint"} <= made


def test_lifecycle_through_the_python_api(aws_emulator, seed_models, other_cnn, home, monkeypatch):
    import cloudml
    from cloudml import DeploymentSpec, Resources

    aws_emulator.calls(clear=True)
    monkeypatch.setenv("CLOUDML_HOME", str(home))
    cnn = seed_models["cnn"]
    deployer = cloudml.get_deployer("aws", image_uri=IMAGE, bucket=aws_emulator.bucket, prefix="cloudml", poll_interval=0.5)
    spec = DeploymentSpec(name="cnn-api", model=cnn.path, resources=Resources(max_replicas=2))
    result = deployer.deploy(spec)
    assert result.action == "created" and result.deployment.status.serving
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, cnn.reference())
    assert deployer.deploy(spec).action == "unchanged"
    # logs --follow: the tail, then new lines as the container writes them.
    follow = deployer.logs("cnn-api", tail=3, follow=True)
    assert len([next(follow) for _ in range(3)]) == 3
    deployer.predict("cnn-api", instances=cnn.instances[:1])
    assert next_matching(follow, '"POST /invocations" 200', timeout=30)
    assert [d.name for d in deployer.list() if d.name == "cnn-api"] == ["cnn-api"]
    # A new model on another instance type: SageMaker refuses that for an autoscaled variant, so
    # the registration is lifted for the update and comes back.
    updated = deployer.update(DeploymentSpec(name="cnn-api", model=other_cnn[0], resources=Resources(instance_type="ml.c5.xlarge", max_replicas=2)))
    assert updated.action == "updated"
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, other_cnn[1])
    details = deployer.get("cnn-api").details
    assert details["instances"] == 1 and details["autoscaling"] == "1-2 instances"
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=details["endpoint_config"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.c5.xlarge"
    assert deployer.delete("cnn-api", purge=True) is True
    assert tagged("cnn-api") == NOTHING
    assert "application-autoscaling:DeregisterScalableTarget" in assert_policy_covers(aws_emulator.calls())


def test_invalid_role_is_refused_and_nothing_is_left(aws_emulator, seed_models, home):
    failed = deploy(seed_models["cnn"].path, "cnn-role", "-o", "role_arn=arn:aws:iam::123456789012:role/does-not-exist", home=home, expect=2)
    assert "Could not assume role" in failed.stderr and "sagemaker.amazonaws.com" in failed.stderr
    assert tagged("cnn-role") == NOTHING
    malformed = deploy(seed_models["cnn"].path, "cnn-role", "-o", "role_arn=my-role", home=home, expect=2)
    assert "is not an IAM role ARN" in malformed.stderr


def test_missing_bucket_permission_is_reported_before_any_sagemaker_resource(aws_emulator, seed_models, home):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cloudml-locked")
    s3.put_bucket_policy(Bucket="cloudml-locked", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::cloudml-locked/*"}]}))
    failed = deploy(seed_models["cnn"].path, "cnn-locked", "-o", "bucket=cloudml-locked", home=home, expect=5)
    assert "access denied" in failed.stderr and "s3://cloudml-locked/" in failed.stderr
    assert "aws-iam-policy.json" in failed.stderr
    assert tagged("cnn-locked") == NOTHING


def test_unknown_instance_type_is_refused_before_anything_is_made(aws_emulator, seed_models, home):
    failed = deploy(seed_models["cnn"].path, "cnn-type", "--instance-type", "ml.m5.larg", home=home, expect=2)
    assert "'ml.m5.larg' is not a SageMaker real-time inference instance type" in failed.stderr
    assert "ml.m5.large" in failed.stderr  # the suggestion
    assert tagged("cnn-type") == NOTHING


@pytest.fixture(scope="module")
def cnn_saved_by_tf_2_16(seed_models, tmp_path_factory):
    """The seed CNN as a SavedModel whose metadata says TensorFlow 2.16 wrote it."""
    return relabelled_savedmodel(seed_models["cnn"].path, tmp_path_factory.mktemp("tf216"), "2.16.1")


def served_image_then_deleted(model, name: str, cnn, home, *options: str) -> str:
    """Deploy `model` with the default image choice, check it serves the seed CNN's predictions,
    delete it (--purge), and return the image its SageMaker model ran."""
    result = run_cli("deploy", model, "--name", name, "--provider", "aws", *options, "--output", "json", home=home)
    assert result.returncode == 0, result.stderr
    image = sagemaker_image(json.loads(result.stdout)["deployment"])
    predicted = run_cli("predict", name, json.dumps(cnn.instances), "--provider", "aws", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
    assert run_cli("delete", name, "--provider", "aws", "--purge", home=home).returncode == 0
    return image


def test_default_image_is_the_tensorflow_serving_image_for_the_models_version(aws_emulator, seed_models, cnn_saved_by_tf_2_16, home):
    image = served_image_then_deleted(cnn_saved_by_tf_2_16, "cnn-tf216", seed_models["cnn"], home, "--instance-type", "ml.g5.xlarge")
    assert image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.16-gpu"


def test_default_image_of_a_tensorflow_package_is_the_tensorflow_serving_image_for_its_version(aws_emulator, seed_models, cnn_saved_by_tf_2_16,
                                                                                             home, tmp_path):
    # A model.tar.gz made by `cloudml package --runtime tensorflow` from a model TF 2.16 saved: the
    # package's manifest (read after packaging) gives the prebuilt TF Serving image.
    cnn = seed_models["cnn"]
    made = run_cli("package", cnn_saved_by_tf_2_16, "--out", tmp_path / "out", "--runtime", "tensorflow", home=home, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    manifest = json.loads((tmp_path / "out" / "model" / "cloudml-manifest.json").read_text())
    assert manifest["runtime"]["backend"] == "tensorflow" and manifest["tensorflow_version"] == "2.16.1", manifest
    image = served_image_then_deleted(tmp_path / "out" / "model.tar.gz", "cnn-tf216-pkg", cnn, home)
    assert image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.16-cpu"


def test_model_saved_by_a_newer_tensorflow_than_any_image_is_refused_before_upload(aws_emulator, seed_models, home):
    result = run_cli("deploy", seed_models["cnn"].path, "--name", "cnn-tf", "--provider", "aws", "-o", "build_image=false", home=home)
    assert result.returncode == 3
    assert "no SageMaker TensorFlow Serving image can load this model" in result.stderr
    assert "newest image is tensorflow-inference:2.20" in result.stderr and "image_uri" in result.stderr
    assert tagged("cnn-tf") == NOTHING


def test_the_emulator_refuses_what_sagemaker_refuses(aws_emulator):
    from botocore.exceptions import ClientError

    sm = boto3.client("sagemaker")
    container = {"Image": IMAGE, "ModelDataUrl": "s3://nowhere/model.tar.gz"}
    sm.create_model(ModelName="dup-model", PrimaryContainer=container, ExecutionRoleArn=aws_emulator.role_arn)
    try:
        with pytest.raises(ClientError, match="Cannot create already existing model"):
            sm.create_model(ModelName="dup-model", PrimaryContainer=container, ExecutionRoleArn=aws_emulator.role_arn)
        variant = {"VariantName": "primary", "ModelName": "dup-model", "InstanceType": "ml.x9.huge", "InitialInstanceCount": 1}
        with pytest.raises(ClientError, match="failed to satisfy constraint"):
            sm.create_endpoint_config(EndpointConfigName="bad-type", ProductionVariants=[variant])
        variant["InstanceType"] = "ml.m5.large"
        sm.create_endpoint_config(EndpointConfigName="no-data", ProductionVariants=[variant])
        sm.create_endpoint(EndpointName="no-data", EndpointConfigName="no-data")
        assert sm.describe_endpoint(EndpointName="no-data")["EndpointStatus"] == "Creating"
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
            sm.update_endpoint(EndpointName="no-data", EndpointConfigName="no-data")
        waiter = sm.get_waiter("endpoint_in_service")
        with pytest.raises(Exception, match="Failed"):
            waiter.wait(EndpointName="no-data", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
        assert "Failed to download model data" in sm.describe_endpoint(EndpointName="no-data")["FailureReason"]
    finally:
        for call in (lambda: sm.delete_endpoint(EndpointName="no-data"), lambda: sm.delete_endpoint_config(EndpointConfigName="no-data"),
                     lambda: sm.delete_model(ModelName="dup-model")):
            try:
                call()
            except ClientError:
                pass


def test_localstack_start_script_serves_an_initialised_account(tmp_path):
    """`localstack/start-emulator.sh`: the Docker-free stack a user starts by hand."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REPO

    env = {**os.environ, "CLOUDML": str(Path(sys.executable).parent / "cloudml")}
    proc = subprocess.Popen([str(REPO / "localstack" / "start-emulator.sh"), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        exports = read_exports(proc.stdout, until="CLOUDML_AWS_ROLE_ARN")
        assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        iam = session.client("iam", endpoint_url=exports["AWS_ENDPOINT_URL"])
        role = iam.get_role(RoleName="cloudml-sagemaker-execution")["Role"]
        assert role["Arn"] == exports["CLOUDML_AWS_ROLE_ARN"]
        buckets = session.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"]).list_buckets()["Buckets"]
        assert "cloudml-artifacts" in [b["Name"] for b in buckets]
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


