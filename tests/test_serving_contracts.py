"""Every serving contract, over real HTTP, against each seed model deployed through the CLI.

Each seed model's sample instances go through the SageMaker, Vertex AI, Azure ML and
TF Serving REST routes of its local deployment, and what comes back must be what the
in-process Keras model computes for the same instances.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from conftest import endpoint

pytestmark = pytest.mark.slow

MODELS = ["autoencoder", "cnn", "lstm"]
# Models whose sample instances share one shape (the LSTM's sequences differ in length).
FIXED_SHAPE = ["autoencoder", "cnn"]
# What each seed's serving signature must say: input name, TF dtype, dims (-1 = any), output dims.
SIGNATURES = {
    "autoencoder": ("pixels", "DT_FLOAT", [-1, 784], [-1, 784]),
    "cnn": ("pixels", "DT_FLOAT", [-1, 784], [-1, 10]),
    "lstm": ("tokens", "DT_INT64", [-1, -1], [-1, 10]),
}


def json_body(response: httpx.Response, status: int = 200):
    assert response.status_code == status, f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_outputs(served, reference) -> None:
    """Served outputs, one per instance, match the reference (shapes included: allclose broadcasts)."""
    assert isinstance(served, list) and len(served) == len(reference)
    for index, (got, want) in enumerate(zip(served, reference)):
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == want.shape, f"instance {index}: served shape {got.shape}, reference {want.shape}"
        assert np.allclose(got, want, atol=1e-5), f"instance {index}: max difference {np.max(np.abs(got - want))}"
    if len({np.shape(r) for r in reference}) == 1:
        assert np.allclose(np.asarray(served), np.asarray(reference), atol=1e-5)


def as_csv(instances) -> bytes:
    return "".join(",".join(repr(v) for v in row) + "\n" for row in instances).encode()


# --- SageMaker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_sagemaker_ping(deployed, client, name):
    body = json_body(client.get(endpoint(deployed, name) + "/ping"))
    assert body["status"] == "ready"
    assert body["model"] == f"seed-{name}"


@pytest.mark.parametrize("name", MODELS)
def test_sagemaker_json_instances(deployed, seed_models, references, client, name):
    response = client.post(endpoint(deployed, name) + "/invocations", json={"instances": seed_models[name].instances})
    assert_outputs(json_body(response)["predictions"], references[name])


@pytest.mark.parametrize("name", MODELS)
def test_sagemaker_bare_json_list(deployed, seed_models, references, client, name):
    response = client.post(endpoint(deployed, name) + "/invocations", json=seed_models[name].instances)
    assert_outputs(json_body(response)["predictions"], references[name])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("content_type", ["application/jsonlines", "application/jsonlines; charset=utf-8"])
def test_sagemaker_jsonlines(deployed, seed_models, references, client, name, content_type):
    body = "".join(json.dumps(instance) + "\n" for instance in seed_models[name].instances).encode()
    response = client.post(endpoint(deployed, name) + "/invocations", content=body, headers={"Content-Type": content_type})
    assert_outputs(json_body(response)["predictions"], references[name])


@pytest.mark.parametrize("name", FIXED_SHAPE)
def test_sagemaker_csv(deployed, seed_models, references, client, name):
    response = client.post(endpoint(deployed, name) + "/invocations", content=as_csv(seed_models[name].instances), headers={"Content-Type": "text/csv"})
    assert_outputs(json_body(response)["predictions"], references[name])


def test_sagemaker_csv_rows_of_different_lengths(deployed, seed_models, references, client):
    """A CSV row is one sequence for the LSTM, so rows may differ in length; each gets its own answer."""
    instances = seed_models["lstm"].instances
    assert len({len(i) for i in instances}) > 1, "the LSTM sample should hold sequences of different lengths"
    response = client.post(endpoint(deployed, "lstm") + "/invocations", content=as_csv(instances), headers={"Content-Type": "text/csv"})
    assert_outputs(json_body(response)["predictions"], references["lstm"])


@pytest.mark.parametrize("name", MODELS)
def test_sagemaker_accept_json(deployed, seed_models, references, client, name):
    """Accept is a list of media ranges: one JSON range among others is enough."""
    response = client.post(
        endpoint(deployed, name) + "/invocations", json={"instances": seed_models[name].instances},
        headers={"Accept": "text/csv;q=0.9, application/json"},
    )
    assert_outputs(json_body(response)["predictions"], references[name])


# --- Vertex AI ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_vertex_health(deployed, client, name):
    assert json_body(client.get(endpoint(deployed, name) + "/health"))["status"] == "ready"


@pytest.mark.parametrize("name", MODELS)
def test_vertex_predict(deployed, seed_models, references, client, name):
    response = client.post(endpoint(deployed, name) + "/predict", json={"instances": seed_models[name].instances, "parameters": {}})
    body = json_body(response)
    assert set(body) == {"predictions"}
    assert_outputs(body["predictions"], references[name])


# --- Azure ML -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_azure_liveness(deployed, client, name):
    assert json_body(client.get(endpoint(deployed, name) + "/"))["status"] == "alive"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("key", ["data", "instances"])
def test_azure_score(deployed, seed_models, references, client, name, key):
    response = client.post(endpoint(deployed, name) + "/score", json={key: seed_models[name].instances})
    assert_outputs(json_body(response)["predictions"], references[name])


# --- TF Serving REST ----------------------------------------------------------------------------
def tfs_base(deployed, name: str, version: bool) -> str:
    base = f"{endpoint(deployed, name)}/v1/models/seed-{name}"
    return base + f"/versions/{deployed[name]['model_version']}" if version else base


@pytest.mark.parametrize("version", [False, True], ids=["latest", "versions-1"])
@pytest.mark.parametrize("name", MODELS)
def test_tfs_status(deployed, client, name, version):
    assert deployed[name]["model_version"] == 1
    body = json_body(client.get(tfs_base(deployed, name, version)))
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


@pytest.mark.parametrize("version", [False, True], ids=["latest", "versions-1"])
@pytest.mark.parametrize("name", MODELS)
def test_tfs_metadata(deployed, seed_models, client, name, version):
    body = json_body(client.get(tfs_base(deployed, name, version) + "/metadata"))
    assert body["model_spec"]["name"] == f"seed-{name}"
    assert body["model_spec"]["version"] == "1"
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    input_name, dtype, dims, output_dims = SIGNATURES[name]
    # The served input is the Keras model's input, under the name the user gave it.
    assert [t.name for t in seed_models[name].keras_model().inputs] == [input_name]
    assert list(signature["inputs"]) == [input_name]
    tensor = signature["inputs"][input_name]
    assert tensor["dtype"] == dtype
    assert [int(d["size"]) for d in tensor["tensor_shape"]["dim"]] == dims
    assert tensor["tensor_shape"]["unknown_rank"] is False
    (output,) = signature["outputs"].values()
    assert output["dtype"] == "DT_FLOAT"
    assert [int(d["size"]) for d in output["tensor_shape"]["dim"]] == output_dims
    assert signature["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("version", [False, True], ids=["latest", "versions-1"])
@pytest.mark.parametrize("name", MODELS)
def test_tfs_predict_rows(deployed, seed_models, references, client, name, version):
    for payload in ({"instances": seed_models[name].instances}, {"signature_name": "serving_default", "instances": seed_models[name].instances}):
        body = json_body(client.post(tfs_base(deployed, name, version) + ":predict", json=payload))
        assert set(body) == {"predictions"}
        assert_outputs(body["predictions"], references[name])


@pytest.mark.parametrize("version", [False, True], ids=["latest", "versions-1"])
@pytest.mark.parametrize("name", FIXED_SHAPE)
def test_tfs_predict_columns(deployed, seed_models, references, client, name, version):
    instances = seed_models[name].instances
    input_name = SIGNATURES[name][0]
    for payload in ({"inputs": instances}, {"inputs": {input_name: instances}}):
        body = json_body(client.post(tfs_base(deployed, name, version) + ":predict", json=payload))
        assert set(body) == {"outputs"}
        assert_outputs(body["outputs"], references[name])


@pytest.mark.parametrize("version", [False, True], ids=["latest", "versions-1"])
def test_tfs_predict_columns_lstm(deployed, seed_models, references, client, version):
    """Columnar needs one tensor per input, so sequences of different lengths go one per request;
    together they are refused as ragged (400), not padded behind the caller's back."""
    url = tfs_base(deployed, "lstm", version) + ":predict"
    instances = seed_models["lstm"].instances
    for instance, reference in zip(instances, references["lstm"]):
        for payload in ({"inputs": [instance]}, {"inputs": {"tokens": [instance]}}):
            assert_outputs(json_body(client.post(url, json=payload))["outputs"], [reference])
    error = json_body(client.post(url, json={"inputs": instances}), status=400)["error"]
    assert "ragged" in error and "tokens" in error


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/models/nope", "model 'nope' is not served here"),
        ("/v1/models/nope/metadata", "model 'nope' is not served here"),
        ("/v1/models/seed-{name}/versions/2", "version 2 of 'seed-{name}' is not served here; version 1 is"),
        ("/v1/models/seed-{name}/versions/2/metadata", "version 2 of 'seed-{name}' is not served here; version 1 is"),
    ],
)
def test_tfs_unknown_model_or_version_get(deployed, client, name, path, message):
    body = json_body(client.get(endpoint(deployed, name) + path.format(name=name)), status=404)
    assert message.format(name=name) in body["error"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("path", ["/v1/models/nope:predict", "/v1/models/seed-{name}/versions/2:predict", "/v1/models/nope/versions/1:predict"])
def test_tfs_unknown_model_or_version_predict(deployed, seed_models, client, name, path):
    response = client.post(endpoint(deployed, name) + path.format(name=name), json={"instances": seed_models[name].instances})
    error = json_body(response, status=404)["error"]
    assert "is not served here" in error and f"seed-{name}" in error


# --- variable-length sequences ------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/invocations", "/predict", "/score", "/v1/models/seed-lstm:predict"])
def test_lstm_mixed_lengths_in_one_request(deployed, seed_models, client, route):
    """Sequences of different lengths, interleaved and repeated, each get their own answer, in order."""
    model = seed_models["lstm"]
    a, b, c = model.instances
    instances = [c, a, b[:3], c, b, a[:1]]
    assert len({len(i) for i in instances}) == 5
    body = json_body(client.post(endpoint(deployed, "lstm") + route, json={"instances": instances}))
    assert_outputs(body["predictions"], model.reference(instances))
