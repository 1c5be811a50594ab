"""Request parsing without a server: bodies -> instances (cloudml.serving.http.codecs) and
instances -> validated numpy batches (cloudml.serving.requests), as a client sees them."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from cloudml.contract import Signature, TensorSpec
from cloudml.serving.errors import InvalidInput, PayloadTooLarge, UnacceptableFormat, UnsupportedFormat
from cloudml.serving.http import codecs
from cloudml.serving.http.request import HttpRequest, accepts_json
from cloudml.serving.http.responses import dumps
from cloudml.serving.requests import BadRequest, Batch, batch_from_columns, batch_from_instances, jsonable, signature_summary

CSV_HINT = "write numbers as JSON does"


def signature(**inputs: TensorSpec) -> Signature:
    return Signature(inputs=inputs, outputs={"y": TensorSpec(dtype="float32", shape=[None])})


def spec(dtype: str, *shape: int | None) -> TensorSpec:
    return TensorSpec(dtype=dtype, shape=[None, *shape])


VECTOR = signature(x=spec("float32", 3))  # float32[3] per instance
SCALAR = signature(x=spec("float32"))  # float32[] per instance
INTS = signature(x=spec("int64"))
BOOLS = signature(x=spec("bool"))
TEXT = signature(x=spec("string"))
SEQUENCE = signature(tokens=spec("int32", None))  # variable length
ANY = signature(x=TensorSpec(dtype="float32", shape=None))
TWO = signature(a=spec("float32", 2), b=spec("int64"))


def only_group(batch: Batch) -> dict[str, np.ndarray]:
    assert len(batch.groups) == 1
    indices, arrays = batch.groups[0]
    assert indices == list(range(batch.size))
    return arrays


def refused(call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    return info.value


# --- the signature as the client is told it -------------------------------------------------


def test_signature_summary_describes_each_input_per_instance():
    assert signature_summary(TWO) == {"a": "float32[2] per instance", "b": "int64[] per instance"}
    assert signature_summary(SEQUENCE) == {"tokens": "int32[?] per instance"}
    assert signature_summary(ANY) == {"x": "float32 of any shape"}


def test_bad_request_is_the_invalid_input_error():
    assert BadRequest is InvalidInput


# --- row format: {"instances": [...]} -------------------------------------------------------


def test_rows_of_one_input_stack_into_one_float32_batch():
    batch = batch_from_instances([[1, 2, 3], [4.5, 5, 6]], VECTOR)
    assert batch.size == 2
    x = only_group(batch)["x"]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4.5, 5, 6]])


def test_scalar_instances_make_a_one_dimensional_batch():
    x = only_group(batch_from_instances([1, 2.5, True], SCALAR))["x"]
    assert x.dtype == np.float32 and x.shape == (3,)
    np.testing.assert_array_equal(x, [1, 2.5, 1])


def test_objects_keyed_by_input_name_feed_several_inputs():
    arrays = only_group(batch_from_instances([{"a": [1, 2], "b": 7}, {"b": 8, "a": [3, 4]}], TWO))
    assert set(arrays) == {"a", "b"}
    np.testing.assert_array_equal(arrays["a"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert arrays["a"].dtype == np.float32
    np.testing.assert_array_equal(arrays["b"], [7, 8])
    assert arrays["b"].dtype == np.int64


def test_an_object_for_a_single_input_model_is_keyed_by_its_name():
    x = only_group(batch_from_instances([{"x": [1, 2, 3]}], VECTOR))["x"]
    np.testing.assert_array_equal(x, [[1, 2, 3]])


def test_variable_length_instances_are_grouped_by_shape_in_request_order():
    batch = batch_from_instances([[1, 2], [3], [4, 5], [6]], SEQUENCE)
    assert batch.size == 4
    groups = {tuple(indices): arrays["tokens"] for indices, arrays in batch.groups}
    assert set(groups) == {(0, 2), (1, 3)}
    np.testing.assert_array_equal(groups[(0, 2)], [[1, 2], [4, 5]])
    np.testing.assert_array_equal(groups[(1, 3)], [[3], [6]])
    assert groups[(1, 3)].dtype == np.int32


def test_empty_instances_are_refused_with_what_the_model_takes():
    error = refused(batch_from_instances, [], VECTOR)
    assert error.message == "empty batch: send at least one instance"
    assert error.expected == {"x": "float32[3] per instance"}


@pytest.mark.parametrize("instances, shape", [
    ([[1, 2]], "[1, 2]"),  # too short, fast path
    ([[[1, 2, 3]]], "[1, 1, 3]"),  # nested one level too deep
    ([1, 2, 3], "[3]"),  # scalars where vectors belong
])
def test_instances_of_the_wrong_shape_name_both_shapes(instances, shape):
    error = refused(batch_from_instances, instances, VECTOR)
    assert error.message == f"instances: shape {shape} does not match the expected [?, 3] (float32[3] per instance)"


def test_one_instance_of_the_wrong_shape_among_good_ones_is_named_by_index():
    error = refused(batch_from_instances, [[1, 2, 3], [1, 2]], VECTOR)
    assert error.message == "instance 1, input 'x': shape [2] does not match the expected [3] (float32[3] per instance)"


def test_ragged_nested_lists_in_one_instance_are_refused():
    sig = signature(x=spec("float32", 2, 2))
    error = refused(batch_from_instances, [[[1, 2], [3]]], sig)
    assert error.message.startswith("instance 0, input 'x': values are ragged")
    assert "float32[2, 2] per instance" in error.message


def test_mixed_numbers_and_strings_in_one_instance_are_refused():
    error = refused(batch_from_instances, [[1, "a", 3]], VECTOR)
    assert error.message == "instances: expected numbers (float32[3] per instance), got strings"


@pytest.mark.parametrize("instances, problem", [
    ([1.5], "expected integers (int64[] per instance), got non-integer numbers"),
    ([float("nan")], "expected integers (int64[] per instance), got non-integer numbers"),
    (["1"], "expected numbers (int64[] per instance), got strings"),
    ([2**63], "values do not fit in int64"),  # int64's max + 1: must not wrap around
    ([-1, 2**63], "values do not fit in int64"),
    ([2**64 - 1], "values do not fit in int64"),
])
def test_integer_inputs_refuse_what_does_not_cast_exactly(instances, problem):
    assert refused(batch_from_instances, instances, INTS).message == f"instances: {problem}"


def test_integral_floats_and_booleans_are_taken_as_integers():
    x = only_group(batch_from_instances([1.0, -2.0, True, 2**62], INTS))["x"]
    assert x.dtype == np.int64
    assert x.tolist() == [1, -2, 1, 2**62]


@pytest.mark.parametrize("dtype, values, problem", [
    ("int8", [127, 128], "values do not fit in int8"),
    ("uint8", [0, -1], "values do not fit in uint8"),
    ("uint8", [255.0, 256.0], "values do not fit in uint8"),
])
def test_narrow_integer_inputs_check_their_range(dtype, values, problem):
    assert refused(batch_from_instances, values, signature(x=spec(dtype))).message == f"instances: {problem}"


def test_uint8_at_its_bounds_is_accepted():
    x = only_group(batch_from_instances([0, 255], signature(x=spec("uint8"))))["x"]
    assert x.dtype == np.uint8 and x.tolist() == [0, 255]


def test_boolean_inputs_take_only_booleans():
    assert only_group(batch_from_instances([True, False], BOOLS))["x"].tolist() == [True, False]
    assert refused(batch_from_instances, [1, 0], BOOLS).message == "instances: expected booleans (bool[] per instance), got int64 values"


def test_string_inputs_take_text_as_objects():
    x = only_group(batch_from_instances(["héllo", "b"], TEXT))["x"]
    assert x.dtype == object and x.tolist() == ["héllo", "b"]


def test_string_inputs_refuse_numbers():
    assert refused(batch_from_instances, [1, 2], TEXT).message == "instances: expected strings (string[] per instance), got int64 values"


def test_b64_values_inside_a_keyed_instance_become_bytes():
    sig = signature(image=spec("string"), size=spec("int64"))
    arrays = only_group(batch_from_instances([{"image": {"b64": base64.b64encode(b"\x00\xffpng").decode()}, "size": 4}], sig))
    assert arrays["image"].tolist() == [b"\x00\xffpng"]
    assert arrays["size"].tolist() == [4]


def test_nested_b64_values_are_decoded_recursively():
    sig = signature(x=spec("string", 2, 2), n=spec("int64"))
    rows = [[{"b64": "aGk="}, {"b64": "eW8="}], [{"b64": "AQI="}, {"b64": ""}]]
    arrays = only_group(batch_from_instances([{"x": rows, "n": 1}], sig))
    assert arrays["x"].tolist() == [[[b"hi", b"yo"], [b"\x01\x02", b""]]]


def test_b64_bytes_ending_in_nul_reach_the_model_whole():
    value = {"b64": base64.b64encode(b"ab\x00\x00").decode()}
    assert batch_from_columns([value], TEXT)["x"].tolist() == [b"ab\x00\x00"]


def test_strings_ending_in_nul_reach_the_model_whole_and_keep_their_type():
    x = only_group(batch_from_instances(["a\x00", "bc"], TEXT))["x"]
    assert x.dtype == object and x.tolist() == ["a\x00", "bc"]
    x = only_group(batch_from_instances([[{"b64": "YQA="}], [{"b64": "Yg=="}]], signature(x=spec("string", 1))))["x"]
    assert x.shape == (2, 1) and x.tolist() == [[b"a\x00"], [b"b"]]


def test_a_b64_object_instance_is_keyed_when_the_input_is_named_b64():
    x = only_group(batch_from_instances([{"b64": "hi"}], signature(b64=spec("string"))))["b64"]
    assert x.tolist() == ["hi"]


@pytest.mark.parametrize("value", [{"b64": "!!not base64"}, {"b64": 12}, {"b64": "aGk"}])
def test_invalid_b64_is_refused(value):
    sig = signature(image=spec("string"), size=spec("int64"))
    error = refused(batch_from_instances, [{"image": value, "size": 1}], sig)
    assert error.message == 'a {"b64": ...} value is not valid base64'


def test_bare_b64_instances_of_a_single_string_input_are_bytes():
    x = only_group(batch_from_instances([{"b64": "aGk="}, {"b64": "eW8="}], TEXT))["x"]
    assert x.tolist() == [b"hi", b"yo"]


def test_unknown_input_names_are_refused_with_the_model_inputs():
    error = refused(batch_from_instances, [{"a": [1, 2], "b": 1, "c": 3, "d": 4}], TWO)
    assert error.message.startswith("instance 0: unknown input name(s) 'c', 'd'; the model's inputs are 'a', 'b'")
    assert '{"instances": [...]}' in error.message
    assert error.expected == {"a": "float32[2] per instance", "b": "int64[] per instance"}


def test_missing_inputs_are_named():
    error = refused(batch_from_instances, [{"a": [1, 2], "b": 1}, {"a": [1, 2]}], TWO)
    assert error.message == "instance 1: missing input(s) 'b'"
    assert error.expected == signature_summary(TWO)


def test_a_list_instance_for_a_model_with_several_inputs_is_refused():
    error = refused(batch_from_instances, [[1, 2]], TWO)
    assert error.message == "instance 0: the model has several inputs, so each instance must be an object keyed by input name"


def test_an_input_of_unknown_rank_takes_any_shape():
    x = only_group(batch_from_instances([[[1, 2], [3, 4]]], ANY))["x"]
    assert x.shape == (1, 2, 2)


def test_an_instance_with_too_many_dimensions_is_refused():
    deep: list = [1.0]
    for _ in range(63):
        deep = [deep]
    sig = signature(x=TensorSpec(dtype="float32", shape=None), other=spec("float32"))
    error = refused(batch_from_instances, [{"x": deep, "other": 1}], sig)
    assert error.message == "instance 0, input 'x': 64 dimensions; an instance may have at most 63 (float32 of any shape)"


# --- columnar format: {"inputs": ...} --------------------------------------------------------


def test_a_bare_column_feeds_the_only_input():
    arrays = batch_from_columns([[1, 2, 3], [4, 5, 6]], VECTOR)
    assert list(arrays) == ["x"]
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], [[1, 2, 3], [4, 5, 6]])


def test_named_columns_feed_several_inputs():
    arrays = batch_from_columns({"a": [[1, 2], [3, 4]], "b": [5, 6]}, TWO)
    np.testing.assert_array_equal(arrays["a"], [[1, 2], [3, 4]])
    assert arrays["b"].dtype == np.int64 and arrays["b"].tolist() == [5, 6]


def test_columns_of_different_batch_sizes_are_refused():
    error = refused(batch_from_columns, {"a": [[1, 2], [3, 4]], "b": [5]}, TWO)
    assert error.message == "inputs have different batch sizes"


@pytest.mark.parametrize("columns", [[], {"a": [], "b": []}])
def test_empty_columns_are_refused(columns):
    sig = SCALAR if isinstance(columns, list) else signature(a=spec("float32"), b=spec("int64"))
    error = refused(batch_from_columns, columns, sig)
    assert error.message == "empty batch: send at least one instance"
    assert error.expected == signature_summary(sig)


def test_one_empty_column_among_full_ones_is_refused_as_empty():
    error = refused(batch_from_columns, {"a": [], "b": [1]}, signature(a=spec("float32"), b=spec("int64")))
    assert error.message == "empty batch: send at least one instance"


def test_a_bare_column_for_a_model_with_several_inputs_is_refused():
    error = refused(batch_from_columns, [[1, 2]], TWO)
    assert error.message == '"inputs" must be an object keyed by input name for a model with several inputs'
    assert error.expected == signature_summary(TWO)


def test_unknown_and_missing_columns_are_named():
    assert refused(batch_from_columns, {"a": [[1, 2]], "b": [1], "z": [1]}, TWO).message == (
        "unknown input name(s) 'z'; the model's inputs are 'a', 'b'")
    assert refused(batch_from_columns, {"a": [[1, 2]]}, TWO).message == "missing input(s) 'b'"


def test_columns_of_the_wrong_shape_show_the_batched_shape():
    error = refused(batch_from_columns, [[1, 2]], VECTOR)
    assert error.message == "input 'x': shape [1, 2] does not match the expected [?, 3] (float32[3] per instance)"


def test_ragged_columns_are_refused():
    error = refused(batch_from_columns, [[1], [2, 3]], SEQUENCE)
    assert error.message == "input 'tokens': values are ragged (nested lists of different lengths); expected int32[?] per instance"


def test_a_scalar_column_has_no_batch_dimension():
    error = refused(batch_from_columns, 5, SCALAR)
    assert error.message == "input 'x': shape [] does not match the expected [?] (float32[] per instance)"


def test_a_dtype_mismatch_in_a_column_is_named():
    assert refused(batch_from_columns, [0.5], INTS).message == "input 'x': expected integers (int64[] per instance), got non-integer numbers"


def test_a_b64_column_of_a_single_string_input_is_bytes():
    assert batch_from_columns([{"b64": "aGk="}, {"b64": "/w=="}], TEXT)["x"].tolist() == [b"hi", b"\xff"]


def test_a_bare_b64_value_is_a_value_not_an_input_name():
    # {"b64": ...} is not read as keyed by an input named "b64": it is one (unbatched) string.
    error = refused(batch_from_columns, {"b64": "aGk="}, TEXT)
    assert error.message == "input 'x': shape [] does not match the expected [?] (string[] per instance)"


# --- outputs back to JSON --------------------------------------------------------------------


def test_numeric_outputs_are_passed_on_unchanged():
    array = np.array([1.5, 2.5], dtype=np.float32)
    assert jsonable(array) is array


def test_string_outputs_become_text_or_b64_when_not_utf8():
    array = np.array([b"caf\xc3\xa9", b"\xff\x00", "already text"], dtype=object)
    assert jsonable(array) == ["café", {"b64": base64.b64encode(b"\xff\x00").decode()}, "already text"]


def test_empty_string_outputs_are_an_empty_list():
    assert jsonable(np.array([], dtype=object)) == []


def test_render_rows_of_one_output_is_the_batch():
    assert codecs.render_rows({"y": np.array([b"a", b"b"], dtype=object)}) == ["a", "b"]


def test_render_rows_of_several_outputs_is_an_object_per_instance():
    rows = codecs.render_rows({"score": np.array([[0.5], [0.25]], dtype=np.float32), "n": np.array([1, 2])})
    assert dumps(rows) == b'[{"score":[0.5],"n":1},{"score":[0.25],"n":2}]'


def test_render_rows_of_several_outputs_writes_string_outputs_as_text():
    rows = codecs.render_rows({"score": np.array([0.5, 0.25], dtype=np.float32), "label": np.array([b"cat", b"dog"], dtype=object)})
    assert dumps(rows) == b'[{"score":0.5,"label":"cat"},{"score":0.25,"label":"dog"}]'


def test_render_rows_of_per_instance_arrays_keeps_each_one():
    rows = codecs.render_rows({"y": [np.array([b"x"], dtype=object), np.array([b"y", b"z"], dtype=object)]})
    assert rows == [["x"], ["y", "z"]]


def test_render_columns_keys_outputs_by_name_only_when_there_are_several():
    assert codecs.render_columns({"y": np.array([b"a"], dtype=object)}) == ["a"]
    columns = codecs.render_columns({"y": np.array([b"a"], dtype=object), "z": np.array([b"b"], dtype=object)})
    assert columns == {"y": ["a"], "z": ["b"]}


# --- JSON bodies -----------------------------------------------------------------------------


def test_parse_json_reads_one_document():
    assert codecs.parse_json(b'{"instances": [[1, 2.5]], "parameters": {"top_k": 3}}') == {
        "instances": [[1, 2.5]], "parameters": {"top_k": 3}}


@pytest.mark.parametrize("body, detail", [
    (b"", "empty"),
    (b"not json", "invalid literal"),
    (b'{"instances": [1, 2', "unexpected end of data"),
    (b"[NaN]", ""),
    (b"\xff\xfe", "UTF-8"),
])
def test_parse_json_refuses_what_is_not_json(body, detail):
    error = refused(codecs.parse_json, body)
    assert error.message.startswith("request body is not valid JSON: ")
    assert detail in error.message


def test_json_documents_one_document_is_a_list_of_one():
    assert codecs.parse_json_documents(b'{"instances": [1]}') == [{"instances": [1]}]


@pytest.mark.parametrize("body", [b"[1, 2]\n[3, 4]\n", b"[1, 2]\r\n\r\n[3, 4]", b"[1, 2] [3, 4]", b"[1, 2]\t[3, 4]", b"[1, 2]\n [3,\t4]"])
def test_json_documents_separated_by_whitespace_are_several(body):
    assert codecs.parse_json_documents(body) == [[1, 2], [3, 4]]


def test_json_lines_mix_lines_and_documents_side_by_side():
    assert codecs.parse_jsonlines(b'{"a": 1}\n{"a": 2} {"a": 3}\n\n4') == [{"a": 1}, {"a": 2}, {"a": 3}, 4]


def test_a_broken_line_after_good_ones_is_named_by_number():
    error = refused(codecs.parse_jsonlines, b"[1]\n[2]\n[3")
    assert error.message.startswith("line 3 of the JSON Lines body is not valid JSON: ")


def test_a_broken_single_document_is_not_reported_as_lines():
    error = refused(codecs.parse_json_documents, b'{"instances":\n [1, 2}')
    assert error.message.startswith("request body is not valid JSON: ")


@pytest.mark.parametrize("body", [b"[1][2]", b"[1] [NaN]", b"[1] [Infinity]", b"[1] \xff"])
def test_documents_side_by_side_must_be_json_separated_by_whitespace(body):
    error = refused(codecs.parse_json_documents, body, what="JSON Lines body")
    assert error.message.startswith("JSON Lines body is not valid JSON: ")


def test_an_overflowing_number_side_by_side_is_refused_like_alone():
    assert refused(codecs.parse_json_documents, b"[1e400]").message.startswith("request body is not valid JSON")
    refused(codecs.parse_json_documents, b"[1e400] [2]")
    assert refused(codecs.parse_json_documents, b"[1]\n[2] [-1e400]").message.startswith("line 2 of the request body is not valid JSON")


def test_a_blank_body_is_not_json():
    assert refused(codecs.parse_json_documents, b" \n\n ").message.startswith("request body is not valid JSON: ")


# --- CSV bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"1,2.5\n-3,1e-05\n", b"1,2.5\r\n-3,1e-05", b"1,2.5\r-3,1e-05", b"1, 2.5\n\n-3 ,1e-05\n"])
def test_csv_rows_are_lists_of_numbers(body):
    rows = codecs.parse_csv(body)
    assert rows == [[1, 2.5], [-3, 1e-05]]
    assert type(rows[0][0]) is int and type(rows[0][1]) is float


def test_csv_header_row_is_skipped_when_present():
    assert codecs.parse_csv(b"a,b\n1,2\n", header=True) == [[1, 2]]
    assert codecs.parse_csv(b"\n a,b\n1,2\n", header=True) == [[1, 2]]  # the first non-blank row


def test_csv_header_is_a_bad_row_when_not_declared():
    error = refused(codecs.parse_csv, b"a,b\n1,2\n")
    assert error.message.startswith("CSV row 1 holds a value that is not a number")
    assert CSV_HINT in error.message


@pytest.mark.parametrize("cell", [b"nan", b"inf", b"1_0", b"+1", b".5", b'"1"', b"", b"true", b"null", b"1e400", b"[1]"])
def test_csv_refuses_cells_that_are_not_json_numbers(cell):
    error = refused(codecs.parse_csv, b"1,2\n3," + cell + b"\n")
    assert error.message.startswith("CSV row 2 holds a value that is not a number")
    assert CSV_HINT in error.message


def test_csv_rows_are_numbered_counting_blank_lines():
    assert refused(codecs.parse_csv, b"1\n\nx\n").message.startswith("CSV row 3 ")


def test_csv_that_is_not_utf8_is_refused():
    assert refused(codecs.parse_csv, "1,2\n3,é".encode("latin-1")).message == "CSV body is not UTF-8 text"


def test_an_empty_csv_body_has_no_rows():
    assert codecs.parse_csv(b"") == []
    assert codecs.parse_csv(b"\n\r\n") == []


# --- which part of the JSON is the instances -------------------------------------------------


def test_split_body_reads_instances_and_ignores_parameters():
    assert codecs.split_body({"instances": [[1], [2]], "parameters": {"k": 1}}) == ("rows", [[1], [2]])


def test_split_body_takes_a_bare_list_as_instances():
    assert codecs.split_body([[1], [2]]) == ("rows", [[1], [2]])


def test_split_body_reads_columnar_inputs_as_given():
    assert codecs.split_body({"inputs": {"a": [1]}}) == ("columns", {"a": [1]})
    assert codecs.split_body({"inputs": 5}) == ("columns", 5)


def test_split_body_prefers_instances_over_inputs():
    assert codecs.split_body({"instances": [1], "inputs": [2]}) == ("rows", [1])


def test_split_body_reads_other_listed_keys():
    assert codecs.split_body({"data": [[1]]}, keys=("data", "instances")) == ("rows", [[1]])


@pytest.mark.parametrize("value, kind", [({"x": 1}, "dict"), ("text", "str"), (3, "int"), (None, "NoneType")])
def test_split_body_refuses_instances_that_are_not_a_list(value, kind):
    error = refused(codecs.split_body, {"instances": value})
    assert error.message == f'"instances" must be a JSON list of instances, not {kind}'


@pytest.mark.parametrize("payload", [{}, {"data": [1]}, "text", 3, None])
def test_split_body_says_what_to_send(payload):
    error = refused(codecs.split_body, payload)
    assert error.message == 'request body must be {"instances": [...]} or {"inputs": ...} or a JSON list of instances'


def test_split_body_without_columnar_does_not_offer_inputs():
    error = refused(codecs.split_body, {"inputs": [1]}, keys=("data", "instances"), columnar=False)
    assert error.message == 'request body must be {"data": [...]} or {"instances": [...]} or a JSON list of instances'


# --- content types and body reading ---------------------------------------------------------


def request(headers: dict[str, str], *chunks: bytes) -> HttpRequest:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)] or [
        {"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        return messages.pop(0)

    return HttpRequest("POST", "/predict", headers, {}, 0.0, receive, None)


@pytest.mark.parametrize("content_type, media", [
    (None, "application/json"),
    ("application/json; charset=utf-8", "application/json"),
    (" Text/CSV ;header=present", "text/csv"),
])
def test_media_type_defaults_to_json_and_drops_parameters(content_type, media):
    headers = {} if content_type is None else {"content-type": content_type}
    assert request(headers).media_type == media


@pytest.mark.parametrize("content_type", ["application/json", "text/json", "application/vnd.api+json", "APPLICATION/JSON; charset=utf-8"])
def test_json_content_types_are_accepted(content_type):
    request({"content-type": content_type}).require_json()


@pytest.mark.parametrize("content_type", ["text/csv", "text/plain", "application/x-www-form-urlencoded", "application/jsonlines"])
def test_other_content_types_are_refused_saying_to_send_json(content_type):
    with pytest.raises(UnsupportedFormat) as info:
        request({"content-type": content_type}).require_json()
    assert info.value.message == f"unsupported Content-Type {content_type!r}; send application/json"


@pytest.mark.parametrize("accept, ok", [
    ("application/json", True), ("*/*", True), ("application/*", True), ("", True),
    ("text/csv, application/json;q=0.5", True), ("application/json;q=0", False), ("application/json;q=oops", True),
    ("text/csv", False), ("text/html, image/png", False),
])
def test_accept_headers(accept, ok):
    assert accepts_json(accept) is ok


def test_an_accept_header_without_json_is_refused():
    with pytest.raises(UnacceptableFormat) as info:
        request({"accept": "text/csv"}).require_json_answer()
    assert info.value.message == "cannot answer with Accept 'text/csv'; this endpoint answers application/json"


def test_a_body_in_chunks_is_joined():
    assert asyncio.run(request({}, b'{"instances"', b": [1]}").body(100)) == b'{"instances": [1]}'


def test_an_empty_body_is_refused_with_what_to_send():
    with pytest.raises(InvalidInput) as info:
        asyncio.run(request({}).body(100, expected={"x": "float32[] per instance"}))
    assert info.value.message == 'request body is empty; send {"instances": [...]}'
    assert info.value.expected == {"x": "float32[] per instance"}


def test_a_body_declared_too_large_is_refused_before_reading():
    with pytest.raises(PayloadTooLarge) as info:
        asyncio.run(request({"content-length": "101"}).body(100))
    assert info.value.message == "request body of 101 bytes exceeds the limit of 100 bytes; send fewer instances per request"


def test_a_body_that_grows_too_large_is_refused():
    with pytest.raises(PayloadTooLarge) as info:
        asyncio.run(request({}, b"x" * 60, b"x" * 41).body(100))
    assert info.value.message == "request body exceeds the limit of 100 bytes; send fewer instances per request"
