"""Every form `cloudml package` writes deploys (model.tar.gz, the package folder, its model/),
on the local provider and on a cloud (the aws provider against its emulator)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_json, run_cli

pytestmark = pytest.mark.slow

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudml-serving:0.1.0"


@pytest.fixture(scope="module")
def package(seed_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "pkg"
    result = run_cli("package", seed_models["cnn"].path, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def _forms(package):
    return {"archive": package / "model.tar.gz", "folder": package, "model": package / "model"}


def _close(rows, expected) -> bool:
    return len(rows) == len(expected) and all(np.allclose(g, e, atol=1e-5) for g, e in zip(rows, expected))


def test_every_form_cloudml_package_writes_deploys_locally(seed_models, package, home):
    cnn = seed_models["cnn"]
    for form, path in _forms(package).items():
        result = run_cli("deploy", path, "--name", f"pkg-{form}", "--output", "json", home=home)
        assert result.returncode == 0, f"{form}: {result.stderr}"
        dep = json.loads(result.stdout)["deployment"]
        assert dep["status"] == "healthy" and dep["model_version"] == 1, form
        predicted = run_cli("predict", f"pkg-{form}", json.dumps(cnn.instances), home=home)
        assert predicted.returncode == 0 and _close(json.loads(predicted.stdout)["predictions"], cnn.reference()), form
        # The same input again is a no-op, not a restart (the package is reused, not re-exported).
        again = cli_json("deploy", path, "--name", f"pkg-{form}", home=home)
        assert again["action"] == "unchanged" and again["deployment"]["details"]["pid"] == dep["details"]["pid"], form
    assert sorted(d["name"] for d in cli_json("list", home=home)) == ["pkg-archive", "pkg-folder", "pkg-model"]
    assert all(d["status"] == "healthy" for d in cli_json("list", home=home))
    # The package folder is served where it is, not exported again.
    assert cli_json("status", "pkg-model", home=home)["details"]["package"] == str(package / "model")


def test_the_default_model_version_on_an_unchanged_model_is_unchanged(seed_models, home):
    cnn = seed_models["cnn"]
    first = cli_json("deploy", cnn.path, "--name", "ver", home=home)["deployment"]
    again = cli_json("deploy", cnn.path, "--name", "ver", "--model-version", "1", home=home)
    assert again["action"] == "unchanged" and again["deployment"]["details"]["pid"] == first["details"]["pid"]


def test_every_form_cloudml_package_writes_deploys_on_aws(aws_emulator, seed_models, package, home):
    for form, path in _forms(package).items():
        result = run_cli("deploy", path, "--name", f"aws-{form}", "--provider", "aws", "-o", f"image_uri={IMAGE}", "--output", "json", home=home)
        assert result.returncode == 0, f"{form}: {result.stdout}\n{result.stderr}"
        assert json.loads(result.stdout)["deployment"]["status"] == "healthy", form
        deleted = run_cli("delete", f"aws-{form}", "--provider", "aws", home=home)
        assert deleted.returncode == 0, deleted.stderr


def test_a_tf_serving_base_folder_names_the_model_after_itself_not_its_version(unservable_model, tmp_path):
    import shutil

    base = tmp_path / "half_plus_three"
    shutil.copytree(unservable_model, base / "1")
    result = run_cli("package", base, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "model" / "cloudml-manifest.json").read_text())
    assert manifest["model_name"] == "half_plus_three" and manifest["model_version"] == 1  # so /v1/models/half_plus_three


def test_a_served_tf_serving_base_folder_answers_under_its_own_name(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    import tensorflow as tf

    from cloudml import httpclient

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 0.5 + 3.0}

    module = HalfPlusThree()
    tf.saved_model.save(module, str(tmp_path / "half_plus_three" / "1"), signatures={"serving_default": module.serve})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cloudml", "serve", str(tmp_path / "half_plus_three"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status = httpclient.request("GET", f"http://127.0.0.1:{port}/v1/models/half_plus_three", timeout=2)
                if status.status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "cloudml serve never answered"
            time.sleep(0.3)
        answer = httpclient.request("POST", f"http://127.0.0.1:{port}/v1/models/half_plus_three:predict",
                                    body=b'{"instances": [1.0, 2.0, 5.0]}', headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status == 200 and json.loads(answer.body)["predictions"] == [3.5, 4.0, 5.5]
    finally:
        server.terminate()
        server.wait(20)
