"""A TensorFlow-served model gets a runtime image with the TensorFlow that saved it (and no ONNX
Runtime), built without Docker from the TensorFlow wheelhouse (`make test-assets`), pushed to the
emulated ECR and served: the slowest image test (a 1.5 GB image), run once."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import TF_WHEELHOUSE, require_wheelhouse, rows_close, run_cli, sagemaker_image
from test_cloud_image_build import ecr_base  # noqa: F401 - the offline base, pushed into the emulated ECR

from cloudml.packaging.metadata import installed_tensorflow

pytestmark = pytest.mark.slow


def _tf_assets() -> str:
    version = installed_tensorflow()
    assert version, "the tests run with TensorFlow installed"
    require_wheelhouse(TF_WHEELHOUSE, "tensorflow", version, what="TensorFlow wheelhouse")
    return version


def test_a_tensorflow_served_model_gets_an_image_with_the_tensorflow_that_saved_it(aws_emulator, ecr_base, seed_models, home):  # noqa: F811
    version = _tf_assets()
    _, base, credentials = ecr_base
    cnn = seed_models["cnn"]
    result = run_cli("deploy", cnn.path, "--name", "cnn-tfimage", "--provider", "aws", "--runtime", "tensorflow", "-o", f"base_image={base}",
                     "-o", f"wheelhouse={TF_WHEELHOUSE}", "--output", "json", home=home, timeout=1500)
    assert result.returncode == 0, result.stdout + result.stderr
    deployment = json.loads(result.stdout)["deployment"]
    assert deployment["details"]["runtime"] == "tensorflow"

    image = sagemaker_image(deployment)
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{credentials.username}:{credentials.password}",
                                f"docker://{image}"], capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    labels = json.loads(inspected.stdout)["Labels"]
    assert labels["io.cloudml.backend"] == "tensorflow" and labels["io.cloudml.framework.version"] == version
    pins = labels["io.cloudml.requirements"].split()
    assert f"tensorflow-cpu=={version}" in pins and not any(p.startswith("onnxruntime") for p in pins)

    predicted = run_cli("predict", "cnn-tfimage", json.dumps({"instances": cnn.instances}), "--provider", "aws", "--output", "json", home=home)
    assert predicted.returncode == 0, predicted.stderr
    assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
    assert run_cli("delete", "cnn-tfimage", "--provider", "aws", "--purge", home=home).returncode == 0
