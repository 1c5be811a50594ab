"""The prebuilt-image choice is made from the model's metadata, before any packaging or upload."""

from __future__ import annotations

import json

import boto3
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_a_model_no_prebuilt_image_serves_is_refused_before_packaging(aws_emulator, seed_models, home):
    # The seed models are saved by today's TensorFlow, newer than any SageMaker TF Serving image.
    result = run_cli("deploy", seed_models["cnn"].path, "--name", "cnn-noimage", "--provider", "aws", "--output", "json", home=home)
    assert result.returncode == 3, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "no SageMaker TensorFlow Serving image can load this model" in error["message"]
    assert "image_uri" in error["hint"]
    assert not (home / "aws-packages").exists()  # nothing was packaged
    s3 = boto3.client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        assert not s3.list_objects_v2(Bucket=bucket["Name"], Prefix="cloudml/cnn-noimage/").get("Contents")
