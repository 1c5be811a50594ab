"""Which runtime serves a deployment, as a user sees it: the seed models served by ONNX Runtime by
default, `--runtime tensorflow` on request, a model that does not convert served by TensorFlow
with the reason, PyTorch programs and plain .onnx files deployed, and bad models refused with
nothing deployed. Predictions have the same format whatever the backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_json, endpoint, rows_close, run_cli

from cloudml.contract import MANIFEST_NAME, Manifest

pytestmark = pytest.mark.slow


def _status(name: str, home: Path) -> dict:
    return cli_json("status", name, home=home)


def _manifest(deployment: dict) -> Manifest:
    return Manifest.read(Path(deployment["details"]["package"]))


def _backend_in_metrics(client, url: str) -> str:
    line = next(line for line in client.get(url + "/metrics").text.splitlines() if line.startswith("cloudml_model_info{"))
    return line.split('backend="')[1].split('"')[0]


@pytest.mark.parametrize("name", ["autoencoder", "cnn", "lstm"])
def test_seed_models_are_served_by_onnx_runtime_by_default(name, deployed, session_home, client, references, seed_models):
    status = _status(f"seed-{name}", session_home)
    details = status["details"]
    assert details["runtime"] == "onnx" and details["framework"].startswith("tensorflow 2.")
    manifest = _manifest(status)
    runtime = manifest.runtime
    assert runtime.verification is not None and runtime.verification.passed and runtime.tolerance is not None
    assert runtime.verification.max_abs_diff <= runtime.tolerance.atol
    assert (Path(details["package"]) / "1" / "model.onnx").is_file() and (Path(details["package"]) / "1" / "saved_model.pb").is_file()
    url = endpoint(deployed, name)
    assert _backend_in_metrics(client, url) == "onnx"
    # The LSTM's sample holds sequences of different lengths: each is served at its own length.
    response = client.post(url + "/invocations", json={"instances": seed_models[name].instances})
    assert response.status_code == 200, response.text
    assert rows_close(response.json()["predictions"], references[name])


def test_runtime_tensorflow_serves_with_tensorflow_and_switching_back_is_an_update(seed_models, references, home, client):
    cnn = seed_models["cnn"]
    first = cli_json("deploy", cnn.path, "--name", "cnn-tf", "--runtime", "tensorflow", home=home)
    assert first["action"] == "created" and first["deployment"]["details"]["runtime"] == "tensorflow"
    assert not (Path(first["deployment"]["details"]["package"]) / "1" / "model.onnx").exists()
    url = first["deployment"]["endpoint_url"]
    assert _backend_in_metrics(client, url) == "tensorflow"
    tf_rows = client.post(url + "/invocations", json={"instances": cnn.instances}).json()["predictions"]
    assert rows_close(tf_rows, references["cnn"])

    again = cli_json("deploy", cnn.path, "--name", "cnn-tf", "--runtime", "tensorflow", home=home)
    assert again["action"] == "unchanged"
    switched = cli_json("deploy", cnn.path, "--name", "cnn-tf", home=home)
    assert switched["action"] == "updated" and switched["deployment"]["details"]["runtime"] == "onnx"
    onnx_rows = client.post(url + "/invocations", json={"instances": cnn.instances}).json()["predictions"]
    assert np.allclose(np.asarray(onnx_rows), np.asarray(tf_rows), atol=1e-4)  # the same response format and values


def test_a_model_that_does_not_convert_is_served_by_tensorflow_with_the_reason(lgamma_model, home, client, tmp_path):
    model = lgamma_model.parent  # a TF Serving base folder: lgamma/1/saved_model.pb
    packaged = run_cli("package", model, "--out", tmp_path / "pkg", home=home)
    assert packaged.returncode == 0, packaged.stderr
    assert "runtime: tensorflow" in packaged.stdout and "not served by onnx: tf2onnx has no ONNX mapping for op Lgamma" in packaged.stdout

    out = cli_json("deploy", model, "--name", "lgamma", home=home)
    details = out["deployment"]["details"]
    assert details["runtime"] == "tensorflow" and details["not_onnx_because"] == "tf2onnx has no ONNX mapping for op Lgamma"
    response = client.post(out["deployment"]["endpoint_url"] + "/invocations", json={"instances": [[3.0, 4.0, 0.0]]})
    assert response.status_code == 200 and np.allclose(response.json()["predictions"], np.log([[6.0, 24.0, 1.0]]), atol=1e-5)

    insisted = run_cli("deploy", model, "--name", "lgamma-onnx", "--runtime", "onnx", "--output", "json", home=home)
    assert insisted.returncode == 3, insisted.stdout + insisted.stderr
    error = json.loads(insisted.stdout)
    assert "cannot be served by ONNX Runtime: tf2onnx has no ONNX mapping for op Lgamma" in error["message"] and "--runtime tensorflow" in error["hint"]
    assert run_cli("status", "lgamma-onnx", home=home).returncode == 4  # nothing deployed


# --- PyTorch and ONNX models ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """The MLP as a torch.export program and the CNN as TorchScript, with torch's own outputs."""
    torch = pytest.importorskip("torch")
    from test_torch_models import _built, _save_pt2, _save_script

    folder = tmp_path_factory.mktemp("torch")
    mlp, mlp_shape = _built("mlp")
    cnn, cnn_shape = _built("cnn")
    rng = np.random.default_rng(11)
    mlp_x = rng.standard_normal((5, *mlp_shape)).astype(np.float32)
    cnn_x = rng.standard_normal((3, *cnn_shape)).astype(np.float32)
    with torch.no_grad():
        mlp_y, cnn_y = mlp(torch.from_numpy(mlp_x)).numpy(), cnn(torch.from_numpy(cnn_x)).numpy()
    onnx_file = folder / "mlp.onnx"
    torch.onnx.export(mlp, (torch.from_numpy(mlp_x),), str(onnx_file), input_names=["features"], output_names=["scores"],
                      dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}}, dynamo=False)
    sample = folder / "cnn.sample.json"
    sample.write_text(json.dumps({"instances": cnn_x[:2].tolist()}))
    return {
        "pt2": (_save_pt2(mlp, mlp_shape, folder / "mlp.pt2"), mlp_x, mlp_y),
        "torchscript": (_save_script(cnn, folder / "cnn.pt"), cnn_x, cnn_y),
        "onnx": (onnx_file, mlp_x, mlp_y),
        "sample": sample,
    }


@pytest.mark.parametrize("kind", ["pt2", "torchscript", "onnx"])
def test_pytorch_and_onnx_models_deploy_locally_and_predict_like_torch(kind, torch_models, home, client):
    path, x, expected = torch_models[kind]
    extra = ("--sample", torch_models["sample"]) if kind == "torchscript" else ()
    out = cli_json("deploy", path, "--name", f"torch-{kind}", *extra, home=home)
    details = out["deployment"]["details"]
    # An .onnx file's framework is ONNX, and its version is the producer's (torch wrote this one).
    assert details["runtime"] == "onnx" and details["framework"] == ("onnx pytorch 2.13.0" if kind == "onnx" else "pytorch 2.13.0")
    package = Path(details["package"])
    assert (package / "1" / "model.onnx").is_file() and (package / MANIFEST_NAME).is_file()
    if kind != "onnx":  # the original stays next to what is served
        assert (package / "1" / path.name.replace(path.stem, "model")).is_file()
    response = client.post(out["deployment"]["endpoint_url"] + "/invocations", json={"instances": x.tolist()})
    assert response.status_code == 200, response.text
    assert np.allclose(np.asarray(response.json()["predictions"]), expected, atol=1e-4, rtol=1e-3)
    status = _status(f"torch-{kind}", home)
    assert next(iter(status["details"]["inputs"].values())).startswith("float32[")


def test_bad_pytorch_and_onnx_inputs_are_refused_with_nothing_deployed(torch_models, home, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(torch_models["onnx"][0].read_bytes()[:200])
    wrong_shape = tmp_path / "wrong.sample.json"
    wrong_shape.write_text(json.dumps({"instances": [[1.0, 2.0, 3.0]]}))
    cases = {
        "corrupt-onnx": ((corrupt,), "is not a valid ONNX model"),
        "script-no-sample": ((torch_models["torchscript"][0],), "--sample"),
        "script-bad-sample": ((torch_models["torchscript"][0], "--sample", wrong_shape), "sample"),
        "pt2-as-tensorflow": ((torch_models["pt2"][0], "--runtime", "tensorflow"), "TensorFlow cannot serve it"),
    }
    for name, (args, says) in cases.items():
        result = run_cli("deploy", *args, "--name", name, "--output", "json", home=home)
        assert result.returncode == 3, f"{name}: {result.stdout}{result.stderr}"
        error = json.loads(result.stdout)
        assert says in error["message"] + (error.get("hint") or ""), (name, error)
        assert run_cli("status", name, home=home).returncode == 4, name


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_pytorch_and_onnx_models_deploy_on_the_aws_emulator_with_the_cloudml_image(kind, aws_emulator, torch_models, home):
    from contract.targets import AWS_IMAGE

    path, x, expected = torch_models[kind]
    name = f"{kind}-aws"
    out = cli_json("deploy", path, "--name", name, "--provider", "aws", "-o", f"image_uri={AWS_IMAGE}", home=home)
    assert out["action"] == "created"
    predicted = cli_json("predict", name, "--provider", "aws", json.dumps({"instances": x.tolist()}), home=home)
    assert np.allclose(np.asarray(predicted["predictions"]), expected, atol=1e-4, rtol=1e-3)
    assert run_cli("delete", name, "--provider", "aws", home=home).returncode == 0


def test_without_a_cloudml_image_an_onnx_model_is_refused_before_anything_is_made(aws_emulator, torch_models, home):
    import boto3

    result = run_cli("deploy", torch_models["onnx"][0], "--name", "onnx-noimage", "--provider", "aws", "-o", "build_image=false",
                     "--output", "json", home=home)
    assert result.returncode == 3, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "no prebuilt image with ONNX Runtime" in error["message"] and "image_uri" in error["hint"]
    assert not [e for e in boto3.client("sagemaker").list_endpoints()["Endpoints"] if e["EndpointName"] == "onnx-noimage"]


def test_on_a_cloud_another_runtime_for_the_same_model_is_an_update(aws_emulator, seed_models, home):
    from contract.targets import AWS_IMAGE

    cnn = seed_models["cnn"]
    image = ("-o", f"image_uri={AWS_IMAGE}")
    first = cli_json("deploy", cnn.path, "--name", "cnn-switch", "--provider", "aws", *image, home=home)
    assert first["action"] == "created" and first["deployment"]["details"]["runtime"] == "onnx"
    switched = cli_json("deploy", cnn.path, "--name", "cnn-switch", "--provider", "aws", *image, "--runtime", "tensorflow", home=home)
    assert switched["action"] == "updated" and switched["deployment"]["details"]["runtime"] == "tensorflow"
    again = cli_json("deploy", cnn.path, "--name", "cnn-switch", "--provider", "aws", *image, "--runtime", "tensorflow", home=home)
    assert again["action"] == "unchanged" and again["deployment"]["details"]["runtime"] == "tensorflow"
    predicted = cli_json("predict", "cnn-switch", "--provider", "aws", json.dumps({"instances": cnn.instances}), home=home)
    assert rows_close(predicted["predictions"], cnn.reference())
    assert run_cli("delete", "cnn-switch", "--provider", "aws", "--purge", home=home).returncode == 0
