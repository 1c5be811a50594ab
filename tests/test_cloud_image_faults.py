"""The default image build's faults on a cloud deploy (the AWS emulator, a real registry behind
ECR's auth): each is a clear error with its exit code, and nothing is left in the cloud (no
SageMaker resource, no S3 object); a re-run after the cause is fixed deploys."""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import WHEELHOUSE, relabelled_savedmodel, run_cli
from test_cloud_image_build import ecr_base, own_base  # noqa: F401 - the offline base, pushed into the emulated ECR

pytestmark = pytest.mark.slow


def _deploy(model, name, base, home, *args):
    return run_cli("deploy", model, "--name", name, "--provider", "aws", "-o", f"base_image={base}", "-o", f"wheelhouse={WHEELHOUSE}",
                   *args, "--output", "json", home=home, timeout=900)


def _nothing_in_the_cloud(name: str) -> None:
    sm = boto3.client("sagemaker")
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == name]
    assert not [m for m in sm.list_models()["Models"] if name in m["ModelName"]]
    s3 = boto3.client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        assert not s3.list_objects_v2(Bucket=bucket["Name"], Prefix=f"cloudml/{name}/").get("Contents")


def test_a_registry_that_refuses_the_push_fails_the_deploy_and_leaves_nothing(aws_emulator, ecr_base, seed_models, home, tmp_path):  # noqa: F811
    base = own_base(ecr_base, "3.11-slim-push-refused", tmp_path)  # so the deploy has to push
    aws_emulator.refuse_next("InitiateLayerUpload", times=50)  # ECR: no push into the repository
    try:
        refused = _deploy(seed_models["cnn"].path, "cnn-denied", base, home)
    finally:
        aws_emulator.clear_faults()
    assert refused.returncode not in (0, 1), refused.stdout + refused.stderr  # an error cloudml explains, not a crash
    error = json.loads(refused.stdout)
    assert "denied" in error["message"] and "cloudml/runtime" in error["message"] and "push" in error["hint"], error
    assert "Traceback" not in refused.stderr
    _nothing_in_the_cloud("cnn-denied")

    again = _deploy(seed_models["cnn"].path, "cnn-denied", base, home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["action"] == "created"
    assert run_cli("delete", "cnn-denied", "--provider", "aws", "--purge", home=home).returncode == 0


def test_a_base_image_that_cannot_be_pulled_is_a_clear_error_and_leaves_nothing(aws_emulator, ecr_base, seed_models, home):  # noqa: F811
    host, _, _ = ecr_base
    missing = _deploy(seed_models["cnn"].path, "cnn-nobase", f"{host}/library/python:3.99-nowhere", home)
    assert missing.returncode == 2, missing.stdout + missing.stderr  # a base_image that names nothing: a configuration error
    error = json.loads(missing.stdout)
    assert "cannot be pulled" in error["message"] and "base_image" in error["hint"], error
    _nothing_in_the_cloud("cnn-nobase")


def test_a_tensorflow_version_without_a_wheel_for_the_target_is_a_clear_error(aws_emulator, ecr_base, seed_models, home, tmp_path):  # noqa: F811
    # A SavedModel saved by an older TensorFlow gets an image with THAT TensorFlow: the ONNX
    # wheelhouse has no tensorflow-cpu 2.15.1 wheel, so the build says which one it could not find.
    _, base, _ = ecr_base
    older = relabelled_savedmodel(seed_models["cnn"].path, tmp_path / "tf215", "2.15.1")
    result = _deploy(older, "cnn-tf215", base, home, "--runtime", "tensorflow", "-o", "build_image=true")
    assert result.returncode not in (0, 1), result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "tensorflow-cpu==2.15.1" in error["message"] and "linux/amd64" in error["message"], error
    assert "Traceback" not in result.stderr
    _nothing_in_the_cloud("cnn-tf215")
