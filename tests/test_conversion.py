"""Packaging's runtime choice: a SavedModel converted to ONNX is kept only when it gives the
original's outputs on probe inputs (and the user's sample); otherwise TensorFlow serves it, with
the reason. A user's .onnx file is checked and run once before it is accepted."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from cloudml.contract import ONNX_FILE, Signature, TensorSpec, Tolerance
from cloudml.errors import ExitCode, ModelError
from cloudml.packaging.conversion import DEFAULT_TOLERANCE, NotConvertible, choose_tensorflow_runtime
from cloudml.packaging.conversion.onnxfile import inspect_onnx
from cloudml.packaging.conversion.probes import DYNAMIC_LENGTHS, probe_batches
from cloudml.packaging.conversion.verify import compare

CLASSES = {"output_0": TensorSpec(dtype="float32", shape=[None, 10])}
LSTM_SIGNATURE = Signature(inputs={"tokens": TensorSpec(dtype="int64", shape=[None, None])}, outputs=CLASSES)
PIXELS = Signature(inputs={"pixels": TensorSpec(dtype="float32", shape=[None, 784])}, outputs=CLASSES)


# --- probes and samples ---------------------------------------------------------------------

def test_probes_cover_two_batch_sizes_and_two_sequence_lengths_with_safe_token_ids():
    batches = probe_batches(LSTM_SIGNATURE)
    shapes = {b["tokens"].shape for b in batches}
    assert {s[0] for s in shapes} == {1, 4}
    assert {s[1] for s in shapes} == set(DYNAMIC_LENGTHS)
    assert all(b["tokens"].dtype == np.int64 and set(np.unique(b["tokens"])) <= {0, 1} for b in batches)
    again = probe_batches(LSTM_SIGNATURE)
    assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(batches, again))


def test_probes_keep_a_fixed_batch_and_cover_both_float_ranges():
    signature = Signature(inputs={"image": TensorSpec(dtype="float32", shape=[2, 8, 8, 3]), "flag": TensorSpec(dtype="bool", shape=[2])}, outputs={})
    batches = probe_batches(signature)
    assert all(b["image"].shape == (2, 8, 8, 3) and b["flag"].shape == (2,) and b["flag"].dtype == np.bool_ for b in batches)
    assert any(b["image"].min() < 0 for b in batches) and any(b["image"].min() >= 0 and b["image"].max() < 1 for b in batches)


def test_string_inputs_are_not_convertible():
    signature = Signature(inputs={"text": TensorSpec(dtype="string", shape=[None])}, outputs={})
    with pytest.raises(NotConvertible, match="'text' is a string tensor"):
        probe_batches(signature)


def test_the_sample_becomes_batches_grouped_by_length():
    batches = probe_batches(LSTM_SIGNATURE, sample=[[5, 6, 7], [1, 2], [8, 9, 10]])
    assert [b["tokens"].tolist() for b in batches[-2:]] == [[[5, 6, 7], [8, 9, 10]], [[1, 2]]]


@pytest.mark.parametrize(("sample", "message"), [
    ([[0.5] * 783], r"instance 0, input 'pixels' has shape \[783\]; the model expects float32\[784\] per instance"),
    ([[0.5] * 784, [[0.5] * 28] * 28], r"instance 1, input 'pixels' has shape \[28, 28\]; the model expects float32\[784\]"),
    ([{"image": [0.5] * 784}], r"unknown input\(s\) 'image'; the model's inputs are 'pixels'"),
    ([["a"] * 784], "expected float32 numbers, got strings"),
    ([], "the sample has no instances"),
])
def test_a_sample_that_does_not_match_the_signature_is_a_model_error(sample, message):
    with pytest.raises(ModelError, match=message) as err:
        probe_batches(PIXELS, sample=sample)
    assert err.value.exit_code == ExitCode.MODEL and "instances" in err.value.hint


def test_a_multi_input_sample_needs_every_input_by_name():
    signature = Signature(inputs={"a": TensorSpec(dtype="float32", shape=[None, 2]), "b": TensorSpec(dtype="int64", shape=[None])}, outputs={})
    batches = probe_batches(signature, sample=[{"a": [1, 2], "b": 3}])
    assert batches[-1]["a"].dtype == np.float32 and batches[-1]["b"].tolist() == [3]
    with pytest.raises(ModelError, match=r"instance 0 has no value for input\(s\) 'b'"):
        probe_batches(signature, sample=[{"a": [1, 2]}])
    with pytest.raises(ModelError, match="not an object keyed by input name"):
        probe_batches(signature, sample=[[1, 2]])
    with pytest.raises(ModelError, match="expected int64 values, got fractional numbers"):
        probe_batches(signature, sample=[{"a": [1, 2], "b": 2.5}])


# --- comparing outputs ----------------------------------------------------------------------

def _doubler(noise: float = 0.0, *, shape_from=None, dtype=None, fails_on: int | None = None):
    def run(batch):
        x = batch["x"]
        if fails_on is not None and x.shape[0] == fails_on:
            raise RuntimeError("Non-zero status code returned while running Gemm node")
        y = x * 2 + noise
        return {"y": (y if shape_from is None else y[:, :shape_from]).astype(dtype or x.dtype)}
    return run


XS = [{"x": np.linspace(-3, 3, 12, dtype=np.float32).reshape(n, -1)} for n in (1, 2, 4)]


def test_outputs_within_tolerance_pass_and_report_the_differences():
    result = compare(_doubler(), _doubler(3e-5), XS, DEFAULT_TOLERANCE, used_sample=True)
    assert result.passed and result.probes == 3 and result.used_sample
    assert result.max_abs_diff == pytest.approx(3e-5, rel=0.1) and result.worst_output == "y" and result.reason is None


def test_outputs_past_tolerance_fail_with_the_largest_difference():
    result = compare(_doubler(), _doubler(3e-2), XS, Tolerance(atol=1e-4, rtol=1e-3), used_sample=False)
    assert not result.passed
    assert result.reason == "outputs differ by up to 3.0e-02 (y), tolerance atol 0.0001 rtol 0.001"
    assert result.verification().model_dump() == {"passed": False, "probes": 3, "max_abs_diff": result.max_abs_diff,
                                                   "max_rel_diff": result.max_rel_diff, "worst_output": "y", "used_sample": False}


@pytest.mark.parametrize(("candidate", "reason"), [
    (_doubler(shape_from=2), r"output 'y' is float32\[1, 2\] from the converted model, float32\[1, 12\] from the original"),
    (_doubler(dtype=np.float64), r"output 'y' is float64\[1, 12\] from the converted model, float32\[1, 12\]"),
    (_doubler(fails_on=4), r"failed on probe batch 2 \(x \[4, 3\]\): RuntimeError: Non-zero status"),
    (lambda batch: {"z": batch["x"]}, r"outputs are \['z'\], the original's \['y'\]"),
])
def test_different_outputs_or_a_failing_conversion_fail_with_the_reason(candidate, reason):
    result = compare(_doubler(), candidate, XS, DEFAULT_TOLERANCE, used_sample=False)
    assert not result.passed and result.reason is not None
    assert re.search(reason, result.reason), result.reason


def test_batches_the_original_refuses_are_skipped_and_none_left_fails():
    result = compare(_doubler(fails_on=4), _doubler(), XS, DEFAULT_TOLERANCE, used_sample=False)
    assert result.passed and result.probes == 2
    result = compare(_doubler(fails_on=1), _doubler(), XS[:1], DEFAULT_TOLERANCE, used_sample=False)
    assert not result.passed and "the original model failed on every probe batch (RuntimeError" in result.reason


def test_nan_agrees_only_with_nan():
    nan = [{"x": np.array([[np.nan, 1.0]], dtype=np.float32)}]
    assert compare(_doubler(), _doubler(), nan, DEFAULT_TOLERANCE, used_sample=False).passed
    other = lambda batch: {"y": np.nan_to_num(batch["x"] * 2)}
    result = compare(_doubler(), other, nan, DEFAULT_TOLERANCE, used_sample=False)
    assert not result.passed and np.isfinite(result.max_abs_diff)  # the manifest is JSON: no infinity


# --- a user's .onnx file --------------------------------------------------------------------

def _small_onnx(path: Path, *, custom_op: bool = False) -> Path:
    """y = x @ W + b for x[batch, 4]; mask = tokens > 0 for tokens[batch, seq] (both dims dynamic)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    bias = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.float32), "b")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"]),
             helper.make_node("Greater", ["tokens", "zero"], ["mask"])]
    if custom_op:
        nodes[1] = helper.make_node("FancyAdd", ["xw", "b"], ["y"], domain="com.example")
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]), helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]), helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "seq"])],
        initializer=[weights, bias, zero],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if custom_op else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="handmade", producer_version="0.1")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_valid_onnx_file_gives_its_signature_with_dynamic_dims_as_none(tmp_path):
    signature, graph = inspect_onnx(_small_onnx(tmp_path / "small.onnx"))
    assert signature.model_dump() == {
        "name": "serving_default",
        "inputs": {"x": {"dtype": "float32", "shape": [None, 4]}, "tokens": {"dtype": "int64", "shape": [None, None]}},
        "outputs": {"y": {"dtype": "float32", "shape": [None, 3]}, "mask": {"dtype": "bool", "shape": [None, None]}},
    }
    assert (graph.opset, graph.producer, graph.file) == (17, "handmade 0.1", ONNX_FILE)
    assert graph.inputs == {"x": "x", "tokens": "tokens"} and graph.outputs == {"y": "y", "mask": "mask"}


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_a_corrupt_onnx_file_is_a_model_error(tmp_path, damage):
    path = _small_onnx(tmp_path / "small.onnx")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "random": np.random.default_rng(1).bytes(len(data)), "empty": b""}[damage])
    with pytest.raises(ModelError, match="is not a valid ONNX model") as err:
        inspect_onnx(path)
    assert err.value.exit_code == ExitCode.MODEL and "onnx.checker" in err.value.hint


def test_an_onnx_file_that_checks_but_cannot_run_is_refused(tmp_path):
    path = _small_onnx(tmp_path / "custom.onnx", custom_op=True)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))  # valid as ONNX: only running it shows the problem
    with pytest.raises(ModelError, match="ONNX Runtime could not load") as err:
        inspect_onnx(path)
    assert err.value.exit_code == ExitCode.MODEL


def test_an_onnx_file_with_external_weights_is_refused(tmp_path):
    import onnx

    model = onnx.load(str(_small_onnx(tmp_path / "small.onnx")))
    onnx.save(model, str(tmp_path / "split.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="split.data", size_threshold=0)
    with pytest.raises(ModelError, match="keeps its weights in external data files") as err:
        inspect_onnx(tmp_path / "split.onnx")
    assert "save_as_external_data=False" in err.value.hint


def test_an_onnx_file_runs_on_the_sample_when_given(tmp_path):
    path = _small_onnx(tmp_path / "small.onnx")
    inspect_onnx(path, sample=[{"x": [1, 2, 3, 4], "tokens": [0, 5]}])
    with pytest.raises(ModelError, match=r"input 'x' has shape \[5\]; the model expects float32\[4\]"):
        inspect_onnx(path, sample=[{"x": [1, 2, 3, 4, 5], "tokens": [0, 5]}])


# --- integer inputs that index a table -------------------------------------------------------

ROWS = 5


def _table_onnx(path: Path, index: str) -> Path:
    """y[batch, seq, 2] = table[index(tokens)] for tokens int64[batch, seq], table[5, 2] = row numbers;
    `index`: "direct" (the id itself), "cast" (the id as int32), "wrapped" (a negative id + 5, as Keras's Embedding does) or "shifted" (id + 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.repeat(np.arange(ROWS, dtype=np.float32)[:, None], 2, axis=1), "table")
    consts = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in (("zero", 0), ("rows", ROWS), ("one", 1))]
    nodes = {
        "direct": [helper.make_node("Identity", ["tokens"], ["index"])],
        "cast": [helper.make_node("Cast", ["tokens"], ["index"], to=TensorProto.INT32)],
        "wrapped": [helper.make_node("Less", ["tokens", "zero"], ["negative"]), helper.make_node("Add", ["tokens", "rows"], ["wrapped"]),
                    helper.make_node("Where", ["negative", "wrapped", "tokens"], ["index"])],
        "shifted": [helper.make_node("Add", ["tokens", "one"], ["index"])],
    }[index]
    graph = helper.make_graph(
        [*nodes, helper.make_node("Gather", ["table", "index"], ["y"], axis=0)], "table",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 2])], initializer=[table, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("index", "ranges"), [("direct", {"tokens": (0, ROWS)}), ("cast", {"tokens": (0, ROWS)}),
                                                ("wrapped", {"tokens": (-ROWS, ROWS)}), ("shifted", {})])
def test_the_ids_an_input_indexing_a_table_may_hold_are_found(tmp_path, index, ranges):
    import onnx

    from cloudml.packaging.conversion.ranges import index_ranges

    assert index_ranges(onnx.load(str(_table_onnx(tmp_path / "t.onnx", index)))) == ranges


def test_an_id_outside_the_range_is_refused_by_the_onnx_backend_and_others_answered(tmp_path):
    from cloudml.backends.onnx import OnnxBackend

    path = _table_onnx(tmp_path / "t.onnx", "cast")
    backend = OnnxBackend(path, index_ranges={"tokens": (0, ROWS)})
    assert backend.run({"tokens": np.array([[0, 4, 2]])})["y"][0, :, 0].tolist() == [0, 4, 2]
    for bad in (-1, ROWS):
        with pytest.raises(backend.rejects, match=rf"input 'tokens' holds {bad} at \[0, 1\], outside \[0, {ROWS}\)"):
            backend.run({"tokens": np.array([[1, bad]])})
    # A package written before the ranges were recorded: ONNX Runtime's own bounds (-1 is the last row).
    assert OnnxBackend(path).run({"tokens": np.array([[-1]])})["y"][0, 0, 0] == ROWS - 1


def test_a_manifest_graph_without_ranges_still_loads_and_ranges_survive_json():
    from cloudml.contract import OnnxGraph

    old = OnnxGraph.model_validate({"file": "model.onnx", "opset": 17, "producer": "tf2onnx 1.17.0", "inputs": {"tokens": "tokens"}, "outputs": {"y": "y"}})
    assert old.index_ranges == {}
    new = old.model_copy(update={"index_ranges": {"tokens": (-ROWS, ROWS)}})
    assert OnnxGraph.model_validate_json(new.model_dump_json()).index_ranges == {"tokens": (-ROWS, ROWS)}


# --- SavedModels: the seed models and ones that do not convert ------------------------------

@pytest.fixture(scope="module")
def packaged(seed_models, tmp_path_factory):
    """Each seed .h5 exported to a SavedModel by packaging (no runtime chosen yet)."""
    from cloudml.packaging import package_model

    return {name: package_model(model.path, tmp_path_factory.mktemp(f"pkg-{name}"), archive=False) for name, model in seed_models.items()}


def _onnx_outputs(package, runtime, instances: list) -> list[np.ndarray]:
    """The served ONNX model's output for each instance of a single-input model, one at a time."""
    from cloudml.backends.onnx import OnnxBackend

    backend = OnnxBackend(package.version_dir / runtime.onnx.file, inputs=runtime.onnx.inputs, outputs=runtime.onnx.outputs)
    (name, spec), = package.manifest.signature.inputs.items()
    return [backend.run({name: np.asarray([inst], dtype=spec.dtype)})["output_0"][0] for inst in instances]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["autoencoder", "cnn", "lstm"])
def test_seed_models_are_served_by_onnx_runtime_within_the_tolerance(name, packaged, seed_models):
    package, seed = packaged[name], seed_models[name]
    started = time.perf_counter()
    runtime = choose_tensorflow_runtime(package.version_dir, package.manifest.signature, requested="auto",
                                        tensorflow_version=package.manifest.tensorflow_version, sample=seed.instances)
    seconds = time.perf_counter() - started
    assert runtime.backend == "onnx" and runtime.fallback_reason is None, runtime.fallback_reason
    assert (package.version_dir / ONNX_FILE).is_file() and runtime.original == "saved_model.pb"
    assert runtime.onnx.producer.startswith("tf2onnx ") and runtime.onnx.opset == 17 and runtime.tolerance == DEFAULT_TOLERANCE
    check = runtime.verification
    assert check.passed and check.used_sample and check.probes >= 4 and check.max_abs_diff <= DEFAULT_TOLERANCE.atol
    # What a user gets: ONNX Runtime's predictions are Keras's, in-process.
    got, want = _onnx_outputs(package, runtime, seed.instances), seed.reference()
    assert all(np.allclose(g, w, atol=DEFAULT_TOLERANCE.atol, rtol=DEFAULT_TOLERANCE.rtol) for g, w in zip(got, want))
    print(f"\n{name}: converted and verified in {seconds:.2f} s, max abs diff {check.max_abs_diff:.2e}, max rel diff {check.max_rel_diff:.2e}")


@pytest.mark.slow
def test_the_converted_lstm_takes_any_sequence_length(packaged, seed_models):
    package, seed = packaged["lstm"], seed_models["lstm"]
    runtime = choose_tensorflow_runtime(package.version_dir, package.manifest.signature, requested="onnx", tensorflow_version="2.21.0")
    rng = np.random.default_rng(5)
    sequences = [rng.integers(1, 200, size=n).tolist() for n in (3, 11, 40)]
    got, want = _onnx_outputs(package, runtime, sequences), seed.reference(sequences)
    assert all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, want))
    assert not np.allclose(got[0], got[1])  # different texts, different answers: the length is not ignored


@pytest.mark.slow
def test_runtime_tensorflow_converts_nothing(packaged):
    package = packaged["cnn"]
    (package.version_dir / ONNX_FILE).unlink(missing_ok=True)
    runtime = choose_tensorflow_runtime(package.version_dir, package.manifest.signature, requested="tensorflow", tensorflow_version="2.21.0")
    assert runtime.model_dump() == {"backend": "tensorflow", "framework": "tensorflow", "framework_version": "2.21.0", "requested": "tensorflow",
                                    "original": "saved_model.pb", "onnx": None, "tolerance": None, "verification": None, "fallback_reason": None}
    assert not (package.version_dir / ONNX_FILE).exists()


@pytest.mark.slow
def test_a_wrong_shape_sample_is_refused_before_converting(packaged):
    package = packaged["cnn"]
    (package.version_dir / ONNX_FILE).unlink(missing_ok=True)
    with pytest.raises(ModelError, match=r"instance 0, input 'pixels' has shape \[28, 28\]; the model expects float32\[784\]") as err:
        choose_tensorflow_runtime(package.version_dir, package.manifest.signature, requested="auto", tensorflow_version=None,
                                  sample=[[[0.0] * 28] * 28])
    assert err.value.exit_code == ExitCode.MODEL and not (package.version_dir / ONNX_FILE).exists()


@pytest.mark.slow
def test_an_op_without_onnx_mapping_falls_back_to_tensorflow_naming_the_op(lgamma_model):
    from cloudml.backends.tensorflow import TensorFlowBackend
    from cloudml.packaging.savedmodel import read_signature

    signature, version = read_signature(lgamma_model)
    runtime = choose_tensorflow_runtime(lgamma_model, signature, requested="auto", tensorflow_version=version)
    assert runtime.backend == "tensorflow" and runtime.fallback_reason == "tf2onnx has no ONNX mapping for op Lgamma"
    assert runtime.verification is None and not (lgamma_model / ONNX_FILE).exists()
    # ... and the fallback serves: TensorFlow runs the op.
    out = TensorFlowBackend(lgamma_model, signature).run({"x": np.array([[3.0, 4.0, 0.0]], dtype=np.float32)})
    assert np.allclose(out["y"], np.log([[6.0, 24.0, 1.0]]), atol=1e-5)
    with pytest.raises(ModelError, match="cannot be served by ONNX Runtime: tf2onnx has no ONNX mapping for op Lgamma") as err:
        choose_tensorflow_runtime(lgamma_model, signature, requested="onnx", tensorflow_version=version)
    assert err.value.exit_code == ExitCode.MODEL and "--runtime tensorflow" in err.value.hint
    assert "Tensorflow op [PartitionedCall/Lgamma: Lgamma] is not supported" in err.value.details  # tf2onnx's own words, for the curious


@pytest.mark.slow
def test_a_conversion_that_gives_other_outputs_is_not_used(packaged, other_cnn, tmp_path):
    """Verification catches a wrong graph: the CNN's ONNX model run against a retrained CNN's SavedModel."""
    from cloudml.backends.onnx import OnnxBackend
    from cloudml.backends.tensorflow import TensorFlowBackend
    from cloudml.packaging import package_model
    from cloudml.packaging.conversion.tensorflow import convert_saved_model

    cnn = packaged["cnn"]
    graph = convert_saved_model(cnn.version_dir, cnn.manifest.signature, tmp_path / ONNX_FILE)
    other = package_model(other_cnn[0], tmp_path / "other", archive=False)
    result = compare(TensorFlowBackend(other.version_dir, other.manifest.signature).run, OnnxBackend(tmp_path / graph.file).run,
                     probe_batches(cnn.manifest.signature), DEFAULT_TOLERANCE, used_sample=False)
    assert not result.passed and result.worst_output == "output_0" and result.max_abs_diff > 1e-2
    assert result.reason.startswith("outputs differ by up to ") and "(output_0), tolerance atol 0.0001 rtol 0.001" in result.reason


@pytest.mark.slow
def test_several_inputs_keep_their_names_through_the_conversion(tmp_path):
    import keras

    from cloudml.packaging import package_model

    keras.utils.set_random_seed(7)
    zeta, alpha = keras.Input(shape=(3,), name="zeta"), keras.Input(shape=(3,), name="alpha")  # same shapes: only names tell them apart
    mixed = keras.layers.Concatenate()([keras.layers.Dense(4)(zeta), keras.layers.Dense(4)(alpha)])
    model = keras.Model(inputs=[zeta, alpha], outputs=keras.layers.Dense(2)(mixed))
    model.save(tmp_path / "two_inputs.keras")
    package = package_model(tmp_path / "two_inputs.keras", tmp_path / "out", archive=False)
    runtime = choose_tensorflow_runtime(package.version_dir, package.manifest.signature, requested="onnx", tensorflow_version=None,
                                        sample=[{"zeta": [1, 2, 3], "alpha": [-1, 0, 1]}])
    assert runtime.backend == "onnx" and runtime.onnx.inputs == {"alpha": "alpha", "zeta": "zeta"}
    from cloudml.backends.onnx import OnnxBackend

    x = {"zeta": np.array([[1, 2, 3]], dtype=np.float32), "alpha": np.array([[-1, 0, 1]], dtype=np.float32)}
    got = OnnxBackend(package.version_dir / ONNX_FILE, inputs=runtime.onnx.inputs, outputs=runtime.onnx.outputs).run(x)
    assert np.allclose(next(iter(got.values())), np.asarray(model(x)), atol=1e-5)


@pytest.mark.slow
def test_a_model_that_fails_on_every_probe_falls_back_with_the_reason(unservable_model):
    from cloudml.packaging.savedmodel import read_signature

    signature, version = read_signature(unservable_model)
    runtime = choose_tensorflow_runtime(unservable_model, signature, requested="auto", tensorflow_version=version)
    assert runtime.backend == "tensorflow" and "the original model failed on every probe batch" in runtime.fallback_reason
    assert not runtime.verification.passed and not (unservable_model / ONNX_FILE).exists()

