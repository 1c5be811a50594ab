"""SageMaker's /invocations body rules, as its own TensorFlow Serving container applies them
(aws/sagemaker-tensorflow-serving-container): through the ASGI app in-process, no TensorFlow."""

from __future__ import annotations

import pytest
from test_serving_adapters import _package, call, one

from cloudml.contract import TensorSpec


@pytest.fixture
def vector_model(tmp_path):
    return _package(tmp_path / "vector", {"x": TensorSpec(dtype="float32", shape=[None, 3])}, {"y": TensorSpec(dtype="float32", shape=[None, 3])})


@pytest.fixture
def scalar_model(tmp_path):
    return _package(tmp_path / "scalar", {"x": TensorSpec(dtype="float32", shape=[None])}, {"y": TensorSpec(dtype="float32", shape=[None])})


def predictions(model, **kwargs):
    response = one(model, "POST", "/invocations", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_a_bare_one_dimensional_list_is_one_instance(vector_model):
    assert predictions(vector_model, json=[1.0, 2.0, 5.0]) == [[2.0, 4.0, 10.0]]


def test_a_bare_list_of_lists_is_a_list_of_instances(vector_model):
    assert predictions(vector_model, json=[[1.0, 2.0, 5.0], [0.0, 1.0, 0.5]]) == [[2.0, 4.0, 10.0], [0.0, 2.0, 1.0]]


def test_a_bare_number_is_one_instance(scalar_model):
    assert predictions(scalar_model, json=4.0) == [8.0]


def test_a_bare_object_is_one_instance_keyed_by_input_name(vector_model):
    assert predictions(vector_model, json={"x": [1.0, 2.0, 3.0]}) == [[2.0, 4.0, 6.0]]


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines"])
@pytest.mark.parametrize("separator", [b"\n", b"\r\n", b" ", b"  \n\n "])
def test_json_documents_separated_by_whitespace_are_json_lines(vector_model, content_type, separator):
    body = separator.join([b"[1.0, 2.0, 5.0]", b"[0.0, 1.0, 0.5]"])
    assert predictions(vector_model, content=body, headers={"Content-Type": content_type}) == [[2.0, 4.0, 10.0], [0.0, 2.0, 1.0]]


def test_tf_serving_requests_are_kept_as_they_are(vector_model):
    rows = [[1.0, 2.0, 5.0]]
    for body in ({"instances": rows}, {"signature_name": "serving_default", "instances": rows}):
        assert predictions(vector_model, json=body) == [[2.0, 4.0, 10.0]]
    response = one(vector_model, "POST", "/invocations", json={"inputs": rows})
    assert response.status_code == 200 and response.json() == {"outputs": [[2.0, 4.0, 10.0]]}


def test_a_one_column_csv_row_is_a_scalar_instance(scalar_model):
    assert predictions(scalar_model, content=b"1\n2.5\n", headers={"Content-Type": "text/csv"}) == [2.0, 5.0]


def test_csv_rows_with_several_columns_are_lists(vector_model):
    assert predictions(vector_model, content=b"1,2,3\n4,5,6\n", headers={"Content-Type": "text/csv"}) == [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]


@pytest.mark.parametrize("body", [b"1,2,3\r4,5,6\r", b"1,2,3\r\n4,5,6\r\n", b"1,2,3\n4,5,6"])
def test_csv_takes_any_line_ending(vector_model, body):
    assert predictions(vector_model, content=body, headers={"Content-Type": "text/csv"}) == [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]


def test_csv_with_a_header_row(vector_model):
    body = b"a,b,c\n1,2,3\n"
    assert predictions(vector_model, content=body, headers={"Content-Type": "text/csv; header=present"}) == [[2.0, 4.0, 6.0]]


@pytest.mark.parametrize("cell", [b"nan", b"inf", b"-Infinity", b"1_0", b"+1", b".5", b"0x10", b'"1"', b""])
def test_csv_refuses_what_json_refuses(vector_model, cell):
    response = one(vector_model, "POST", "/invocations", content=b"1," + cell + b",3\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 400, response.text
    assert "CSV row 1" in response.json()["error"] and "not a number" in response.json()["error"]


def test_csv_with_a_huge_field_is_a_400_not_a_500(vector_model):
    response = one(vector_model, "POST", "/invocations", content=b"1,0." + b"5" * 140_000 + b",3\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text  # a long number is still a number
    response = one(vector_model, "POST", "/invocations", content=b"1," + b"x" * 140_000 + b",3\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 400 and "CSV row 1" in response.json()["error"]


def test_a_broken_json_body_still_says_it_is_not_valid_json(vector_model):
    response = one(vector_model, "POST", "/invocations", content=b'{"instances": [[1, 2', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_other_contracts_keep_bare_lists_as_instances(vector_model):
    responses = call(vector_model, [("POST", path, {"json": [[1.0, 2.0, 3.0]]}) for path in ("/predict", "/score", "/v1/models/m:predict")])
    assert [r.json() for r in responses] == [{"predictions": [[2.0, 4.0, 6.0]]}] * 3
