"""The prebuilt-image choice is made from the model's metadata, before any packaging or upload."""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import run_cli


@pytest.mark.slow
def test_a_model_no_prebuilt_image_serves_is_refused_before_packaging(aws_emulator, seed_models, home):
    # The seed models are saved by today's TensorFlow, newer than any SageMaker TF Serving image.
    result = run_cli("deploy", seed_models["cnn"].path, "--name", "cnn-noimage", "--provider", "aws", "-o", "build_image=false",
                     "--output", "json", home=home)
    assert result.returncode == 3, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "no SageMaker TensorFlow Serving image can load this model" in error["message"]
    assert "image_uri" in error["hint"]
    assert not (home / "aws-packages").exists()  # nothing was packaged
    s3 = boto3.client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        assert not s3.list_objects_v2(Bucket=bucket["Name"], Prefix="cloudml/cnn-noimage/").get("Contents")


@pytest.mark.parametrize("provider", ["azure"])
def test_no_prebuilt_image_is_the_same_refusal_on_every_cloud(provider, tmp_path):
    # Azure ML has no TensorFlow image at all: refused at once, with the exit code aws and gcp give.
    result = run_cli("deploy", tmp_path / "model.keras", "--name", "fraud-model", "--provider", provider, "-o", "build_image=false",
                     "--output", "json", home=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert error["exit_code"] == 3 and "prebuilt image can serve this model" in error["message"]
    assert "image_uri" in error["hint"]
