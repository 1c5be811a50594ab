"""Each contract's request formats and mistakes, through the ASGI app in-process: no server,
no TensorFlow (a numpy model stands in for the SavedModel), so every case runs in milliseconds."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from cloudml.contract import Manifest, Signature, TensorSpec
from cloudml.serving.batching import BatchingConfig
from cloudml.serving.errors import (
    CallerGone,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelRejected,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    UnacceptableFormat,
    UnsupportedFormat,
)
from cloudml.serving.http.app import create_app
from cloudml.serving.http.responses import error_response
from cloudml.serving.model import ServedModel


class FunctionBackend:
    """A runtime backend that is a numpy function: the HTTP layer over the real ServedModel, without a framework."""

    name, version, rejects = "numpy", np.__version__, ()

    def __init__(self, function):
        self.run = function


class NumpyModel(ServedModel):
    """y = 2x (and the row sum of each input as "total"), refusing negative values as a model would."""

    def load(self) -> None:
        self.backend = FunctionBackend(self._compute)

    def _compute(self, inputs):
        if any(np.any(a < 0) for a in inputs.values()):
            raise ModelRejected("the model rejected the input: negative values")
        first = next(iter(inputs.values()))
        out = {"y": first * 2}
        if len(self.signature.outputs) > 1:
            out["total"] = sum(a.reshape(len(a), -1).sum(axis=1) for a in inputs.values())
        return out


def _package(folder, inputs, outputs) -> NumpyModel:
    folder.mkdir(parents=True, exist_ok=True)
    Manifest(model_name="m", model_version=3, tensorflow_version="2.x", source_format="test", source_name="test",
             content_hash="0" * 64, signature=Signature(inputs=inputs, outputs=outputs)).write(folder)
    model = NumpyModel(folder)
    model.load()
    return model


@pytest.fixture
def vector_model(tmp_path):
    return _package(tmp_path / "vector", {"x": TensorSpec(dtype="float32", shape=[None, 3])}, {"y": TensorSpec(dtype="float32", shape=[None, 3])})


@pytest.fixture
def sequence_model(tmp_path):
    return _package(tmp_path / "sequence", {"tokens": TensorSpec(dtype="int64", shape=[None, None])}, {"y": TensorSpec(dtype="int64", shape=[None, None])})


@pytest.fixture
def two_input_model(tmp_path):
    inputs = {"a": TensorSpec(dtype="float32", shape=[None, 2]), "b": TensorSpec(dtype="float32", shape=[None, 2])}
    outputs = {"y": TensorSpec(dtype="float32", shape=[None, 2]), "total": TensorSpec(dtype="float32", shape=[None])}
    return _package(tmp_path / "two", inputs, outputs)


def call(model, requests, **app_options):
    """The app's responses to `requests` (method, path, httpx kwargs), sent concurrently."""
    app = create_app(model, load=False, **app_options)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                return await asyncio.gather(*(client.request(method, path, **kwargs) for method, path, kwargs in requests))
            finally:
                await app.plane.close()

    return asyncio.run(main())


def one(model, method, path, **kwargs) -> httpx.Response:
    return call(model, [(method, path, kwargs)])[0]


ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
DOUBLED = [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]


# --- every contract's formats, decoded into the same predict call -------------------------------
@pytest.mark.parametrize(("path", "body"), [
    ("/invocations", {"instances": ROWS}),
    ("/invocations", ROWS),
    ("/predict", {"instances": ROWS, "parameters": {}}),
    ("/score", {"data": ROWS}),
    ("/score", {"input_data": ROWS}),
    ("/score", {"instances": ROWS}),
    ("/v1/models/m:predict", {"instances": ROWS}),
    ("/v1/models/m/versions/3:predict", {"signature_name": "serving_default", "instances": ROWS}),
])
def test_row_formats_answer_predictions(vector_model, path, body):
    response = one(vector_model, "POST", path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": DOUBLED}


@pytest.mark.parametrize("body", [{"inputs": ROWS}, {"inputs": {"x": ROWS}}])
def test_tfserving_columnar_answers_outputs(vector_model, body):
    for path in ("/v1/models/m:predict", "/invocations"):
        response = one(vector_model, "POST", path, json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"outputs": DOUBLED}


def test_sagemaker_jsonlines_and_csv(vector_model):
    jsonl = b"[1, 2, 3]\n\n[4, 5, 6]\n"
    csv = b"1,2,3\n4,5,6\n"
    for content_type, body in (("application/jsonlines", jsonl), ("application/jsonlines; charset=utf-8", jsonl), ("text/csv", csv)):
        response = one(vector_model, "POST", "/invocations", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": DOUBLED}


def test_sequences_of_different_lengths_are_answered_in_order(sequence_model):
    instances = [[1, 2, 3], [4], [5, 6], [7]]
    response = one(sequence_model, "POST", "/invocations", json={"instances": instances})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[2 * t for t in i] for i in instances]}


def test_several_outputs_give_one_object_per_instance_or_named_columns(two_input_model):
    instances = [{"b": [1.0, 1.0], "a": [1.0, 2.0]}, {"a": [3.0, 4.0], "b": [0.0, 0.0]}]
    rows = one(two_input_model, "POST", "/invocations", json={"instances": instances})
    assert rows.json() == {"predictions": [{"y": [2.0, 4.0], "total": 5.0}, {"y": [6.0, 8.0], "total": 7.0}]}
    columns = one(two_input_model, "POST", "/v1/models/m:predict", json={"inputs": {"a": [[1.0, 2.0]], "b": [[1.0, 1.0]]}})
    assert columns.json() == {"outputs": {"y": [[2.0, 4.0]], "total": [5.0]}}


def test_health_status_and_metadata(vector_model):
    ping, health, ready, alive, status, metadata = call(vector_model, [
        ("GET", "/ping", {}), ("GET", "/health", {}), ("GET", "/ready", {}), ("GET", "/", {}),
        ("GET", "/v1/models/m/versions/3", {}), ("GET", "/v1/models/m/metadata", {}),
    ])
    for response in (ping, health, ready):
        assert response.status_code == 200 and response.json()["status"] == "ready" and response.json()["model"] == "m"
    assert alive.json() == {"status": "alive"}
    assert status.json()["model_version_status"][0] == {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    tensor = metadata.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
    assert tensor["dtype"] == "DT_FLOAT" and [d["size"] for d in tensor["tensor_shape"]["dim"]] == ["-1", "3"]


# --- mistakes: the status and the error each contract answers with ------------------------------
@pytest.mark.parametrize(("method", "path", "kwargs", "status", "fragment"), [
    ("POST", "/invocations", {"content": b'{"instances": [', "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    ("POST", "/invocations", {"json": {"instances": [[1.0, 2.0]]}}, 400, "shape [1, 2]"),
    ("POST", "/invocations", {"json": {"instances": [[-1.0, 2.0, 3.0]]}}, 400, "model rejected the input"),
    ("POST", "/invocations", {"json": {"rows": ROWS}}, 400, '{"instances": [...]}'),
    ("POST", "/invocations", {"content": b"", "headers": {"Content-Type": "text/csv"}}, 400, "body is empty"),
    ("POST", "/invocations", {"content": b"1,x,3\n", "headers": {"Content-Type": "text/csv"}}, 400, "CSV row 1"),
    ("POST", "/invocations", {"content": b"[1,2,3]\n[1,\n", "headers": {"Content-Type": "application/jsonlines"}}, 400, "line 2"),
    ("POST", "/invocations", {"content": b"1,2,3", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported Content-Type 'text/plain'"),
    ("POST", "/invocations", {"json": {"instances": ROWS}, "headers": {"Accept": "text/csv"}}, 406, "Accept 'text/csv'"),
    ("POST", "/predict", {"json": {"inputs": ROWS}}, 400, '{"instances": [...]}'),
    ("POST", "/score", {"content": b"<x/>", "headers": {"Content-Type": "application/xml"}}, 415, "unsupported Content-Type"),
    ("POST", "/v1/models/m:predict", {"json": {"signature_name": "other", "instances": ROWS}}, 400, "signature 'other'"),
    ("POST", "/v1/models/other:predict", {"json": {"instances": ROWS}}, 404, "model 'other' is not served here"),
    ("GET", "/v1/models/m/versions/9", {}, 404, "version 9 of 'm' is not served here; version 3 is"),
    ("GET", "/invocations", {}, 405, "method GET is not allowed"),
    ("GET", "/nowhere", {}, 404, "no route /nowhere"),
])
def test_mistakes_get_a_json_error(vector_model, method, path, kwargs, status, fragment):
    response = one(vector_model, method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["error"]


def test_body_limit_and_expected_inputs(vector_model):
    too_big = call(vector_model, [("POST", "/score", {"json": {"data": ROWS * 100}})], max_body_bytes=500)[0]
    assert too_big.status_code == 413 and "exceeds the limit of 500 bytes" in too_big.json()["error"]
    empty = one(vector_model, "POST", "/invocations", json={"instances": []})
    assert empty.status_code == 400 and empty.json()["expected"] == {"x": "float32[3] per instance"}


def test_a_loading_model_answers_503_with_retry_after(tmp_path):
    model = _package(tmp_path / "loading", {"x": TensorSpec(dtype="float32", shape=[None, 3])}, {"y": TensorSpec(dtype="float32", shape=[None, 3])})
    model.backend = None  # as before load() finishes
    ping, predict = call(model, [("GET", "/ping", {}), ("POST", "/invocations", {"json": {"instances": ROWS}})])
    assert ping.status_code == 503 and ping.json() == {"status": "loading"}
    assert predict.status_code == 503 and predict.headers["retry-after"] == "5" and "still loading" in predict.json()["error"]


@pytest.mark.parametrize(("error", "status", "retry_after"), [
    (InvalidInput("x"), 400, None), (ModelRejected("x"), 400, None), (ModelNotFound("x"), 404, None),
    (UnacceptableFormat("x"), 406, None), (PayloadTooLarge("x"), 413, None), (UnsupportedFormat("x"), 415, None),
    (CallerGone("x"), 499, None), (NotReady("x"), 503, "5"), (Overloaded("x"), 503, "1"), (DeadlineExceeded("x"), 503, "1"),
])
def test_every_domain_error_has_one_http_answer(error, status, retry_after):
    response = error_response(error)
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    assert response.body == b'{"error":"x"}'


def test_a_full_queue_refuses_at_once_with_retry_after(vector_model):
    # One model worker, at most one request in the model and two waiting: the rest are refused.
    calls = []

    def slow(inputs):
        calls.append(len(inputs["x"]))
        time.sleep(0.5)
        return {"y": inputs["x"] * 2}

    vector_model.backend = FunctionBackend(slow)
    config = BatchingConfig(max_batch_size=1, max_queue_size=2, model_workers=1)
    responses = call(vector_model, [("POST", "/invocations", {"json": {"instances": [ROWS[0]]}})] * 8, batching=config)
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503} and statuses.count(503) >= 5, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1" and "at capacity" in response.json()["error"]
        else:
            assert response.json() == {"predictions": [DOUBLED[0]]}
    assert len(calls) == statuses.count(200)


def test_a_request_past_its_deadline_is_not_run(vector_model):
    calls = []

    def slow(inputs):
        calls.append(len(inputs["x"]))
        time.sleep(0.6)
        return {"y": inputs["x"] * 2}

    vector_model.backend = FunctionBackend(slow)
    config = BatchingConfig(max_batch_size=1, model_workers=1, deadline_ms=250)
    responses = call(vector_model, [("POST", "/invocations", {"json": {"instances": [ROWS[0]]}})] * 4, batching=config)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503, 503, 503], statuses
    late = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "deadline" in r.json()["error"] for r in late)
    assert len(calls) == 1


@pytest.mark.parametrize(("name", "value"), [("CLOUDML_MAX_QUEUE_SIZE", "0"), ("CLOUDML_MAX_QUEUE_SIZE", "many"), ("CLOUDML_REQUEST_DEADLINE_MS", "-5")])
def test_queue_settings_from_the_environment_must_be_positive(monkeypatch, name, value):
    from cloudml.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}={value!r} is not a positive number"):
        BatchingConfig.from_env()


def test_queue_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLOUDML_MAX_QUEUE_SIZE", "7")
    monkeypatch.setenv("CLOUDML_REQUEST_DEADLINE_MS", "250")
    config = BatchingConfig.from_env()
    assert (config.max_queue_size, config.deadline_ms) == (7, 250.0)
    assert BatchingConfig.from_env(max_queue_size=3).max_queue_size == 3  # a flag beats the environment
