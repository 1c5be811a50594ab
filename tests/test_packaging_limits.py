"""Packaging refuses hostile or broken models clearly (exit 3, a message naming the problem and
the limit to raise), within bounds (it stops at the limit), and leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from cloudml.errors import ModelError
from cloudml.packaging import package_model
from cloudml.packaging.archive import extract_archive
from cloudml.packaging.declared import declared_variables
from cloudml.packaging.limits import Limits, check_keras_zip

MiB = 1 << 20


def _tar_gz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _bomb_tar_gz(path: Path, *, unpacked: int) -> Path:
    """A tar.gz of one member of `unpacked` zero bytes, made of repeated gzip members (which
    decompress to their concatenation), so a 1 GiB bomb is ~1 MB and costs nothing to build."""
    info = tarfile.TarInfo("1/saved_model.pb")
    info.size = unpacked
    block = 4 * MiB
    assert unpacked % block == 0
    zeros = gzip.compress(bytes(block), compresslevel=9, mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        for _ in range(unpacked // block):
            out.write(zeros)
        out.write(gzip.compress(bytes(1024), mtime=0))  # the end-of-archive blocks
    return path


def _files_below(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _package(model: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli("package", model, "--out", out, env=env, timeout=300)


# --- size, ratio and member limits -----------------------------------------------------------

def _no_file_over(limit: int):
    """preexec_fn: a file written past `limit` bytes kills the process (SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_1mb_tar_gz_that_unpacks_to_1gib_is_refused_as_a_bomb_before_filling_the_disk(tmp_path):
    bomb = _bomb_tar_gz(tmp_path / "model.tar.gz", unpacked=1 << 30)
    assert bomb.stat().st_size < 2 * MiB
    out = tmp_path / "out"
    # Refused at 100 x ~1 MB unpacked; a process writing 1 GiB would be killed by the file size limit.
    result = subprocess.run([sys.executable, "-m", "cloudml", "package", str(bomb), "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, preexec_fn=_no_file_over(300 * MiB))
    assert result.returncode == 3, result.stderr
    assert "CLOUDML_MAX_COMPRESSION_RATIO" in result.stderr and "decompression bomb" in result.stderr
    assert _files_below(out) == []


def test_an_archive_over_the_size_limit_is_refused_naming_the_variable_that_raises_it(tmp_path):
    archive = _tar_gz(tmp_path / "model.tar.gz", [("data.bin", os.urandom(3 * MiB))])
    out = tmp_path / "out"
    refused = _package(archive, out, env={"CLOUDML_MAX_MODEL_BYTES": str(MiB)})
    assert refused.returncode == 3, refused.stderr
    assert "CLOUDML_MAX_MODEL_BYTES" in refused.stderr and "1 MiB" in refused.stderr
    assert _files_below(out) == []
    # Raised, the same archive gets past the limit (and is refused for what it is: no SavedModel).
    raised = _package(archive, out, env={"CLOUDML_MAX_MODEL_BYTES": str(10 * MiB)})
    assert "CLOUDML_MAX_MODEL_BYTES" not in raised.stderr
    assert "holds neither a cloudml package nor a SavedModel" in raised.stderr


def test_an_archive_with_too_many_members_is_refused_naming_the_variable(tmp_path):
    archive = _tar_gz(tmp_path / "model.tar.gz", [(f"1/assets/{i}.txt", b"x") for i in range(30)])
    result = _package(archive, tmp_path / "out", env={"CLOUDML_MAX_ARCHIVE_MEMBERS": "20"})
    assert result.returncode == 3
    assert "CLOUDML_MAX_ARCHIVE_MEMBERS" in result.stderr
    assert _files_below(tmp_path / "out") == []


def test_a_limit_that_is_not_a_number_is_a_usage_error_naming_it(tmp_path):
    archive = _tar_gz(tmp_path / "model.tar.gz", [("1/saved_model.pb", b"x")])
    result = _package(archive, tmp_path / "out", env={"CLOUDML_MAX_MODEL_BYTES": "20GB"})
    assert result.returncode == 2
    assert "CLOUDML_MAX_MODEL_BYTES" in result.stderr


def _h5_bomb(path: Path) -> Path:
    """An HDF5 file of a few KB with a 256 MiB gzip-compressed dataset, which Keras would read whole."""
    import h5py

    with h5py.File(path, "w") as h5:
        h5.create_dataset("dense/kernel", shape=(64 * MiB,), dtype="float32", chunks=(MiB,), compression="gzip")
    return path


def _keras_zip(path: Path, weights: bytes, *, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.0.0"}')
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", weights, compress_type=compression, compresslevel=9)
    return path


# Keras is imported only to load a model; a refused zip must never get that far. `cloudml package`
# packages in a child process, so every Python process it starts reports (a sitecustomize runs in
# each): whether it imported Keras or TensorFlow, and its peak RSS (VmHWM: this process's own,
# not the pytest process it was forked from, which ru_maxrss would include).
_REPORT_IMPORTS = textwrap.dedent("""
    import atexit, os, sys

    def _report():
        peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        with open(os.environ["CLOUDML_TEST_REPORT"], "a") as report:
            print("keras imported:", "keras" in sys.modules or "tensorflow" in sys.modules, "max rss KiB:", peak, file=report)

    atexit.register(_report)
""")


def _package_reporting(model: Path, out: Path, tmp_path: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[bool], int]:
    """`cloudml package MODEL --out OUT`: the result, whether each process imported Keras, the largest peak RSS."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_REPORT_IMPORTS)
    path = os.pathsep.join([str(hooks), str(REPO), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-m", "cloudml", "package", str(model), "--out", str(out)], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env={**os.environ, **(env or {}), "PYTHONPATH": path, "CLOUDML_TEST_REPORT": str(hooks / "report")})
    reports = (hooks / "report").read_text().splitlines()
    imported = [line.split()[2] == "True" for line in reports]
    return result, imported, max((int(line.split()[-1]) for line in reports), default=0)


@pytest.mark.parametrize(
    "make, env, limit",
    [
        (lambda p: _keras_zip(p, bytes(64 * MiB), compression=zipfile.ZIP_DEFLATED), {}, "CLOUDML_MAX_COMPRESSION_RATIO"),
        (lambda p: _keras_zip(p, os.urandom(2 * MiB)), {"CLOUDML_MAX_MODEL_BYTES": str(MiB)}, "CLOUDML_MAX_MODEL_BYTES"),
        (lambda p: _keras_zip(p, _h5_bomb(p.with_name("weights.h5")).read_bytes()), {}, "CLOUDML_MAX_COMPRESSION_RATIO"),
        (lambda p: _h5_bomb(p.with_suffix(".h5")), {}, "CLOUDML_MAX_COMPRESSION_RATIO"),
    ],
    ids=["zip-bomb", "over-size-limit", "hdf5-bomb-in-keras", "hdf5-bomb"],
)
def test_a_keras_or_h5_file_past_a_limit_is_refused_before_keras_reads_it(tmp_path, make, env, limit):
    model = make(tmp_path / "model.keras")
    result, imported, _ = _package_reporting(model, tmp_path / "out", tmp_path, env)
    assert result.returncode == 3, result.stderr
    assert limit in result.stderr and model.name in result.stderr
    assert len(imported) == 2 and not any(imported), result.stderr  # the CLI and its packaging child
    assert _files_below(tmp_path / "out") == []


# --- configs that declare more than the file stores: Keras would allocate it all first -----

def _layer(class_name: str, config: dict, input_shape: list | None = None) -> dict:
    node = {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None}
    if input_shape is not None:
        node["build_config"] = {"input_shape": input_shape}
    return node


def _model(class_name: str, name: str, layers: list[dict]) -> dict:
    return {"module": "keras", "class_name": class_name, "config": {"name": name, "trainable": True, "layers": layers}, "registered_name": None}


def _ids_input(width: int) -> dict:
    return _layer("InputLayer", {"batch_shape": [None, width], "dtype": "int32", "name": "ids"})


def _h5_weights(target, datasets: dict[str, tuple[int, ...]], *, model_config: dict | None = None):
    """Small weights, and for a legacy .h5 model its config, as Keras writes them."""
    import h5py
    import numpy as np

    with h5py.File(target, "w") as h5:
        for name, shape in datasets.items():
            h5.create_dataset(name, data=np.zeros(shape, "float32"))
        if model_config is not None:
            h5.attrs["model_config"] = json.dumps(model_config)
            h5.attrs["keras_version"] = "3.15.0"
            h5.attrs["backend"] = "tensorflow"
    return target


def _declaring_keras(path: Path, config: dict, datasets: dict[str, tuple[int, ...]]) -> Path:
    weights = io.BytesIO()
    _h5_weights(weights, datasets)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.15.0"}')
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights.getvalue())
    return path


# Each file is a few KB; Keras would allocate (and initialise) 8 GB or more before it read a weight.
# (A 5 KB file declaring Embedding(10**8, 2), 800 MB, took Keras 21 s and 4.6 GB of memory to refuse.)
DECLARING_FILES = {
    "keras-embedding-8gb": (
        lambda p: _declaring_keras(p.with_suffix(".keras"), _model("Sequential", "bomb", [
            _ids_input(4), _layer("Embedding", {"name": "words", "input_dim": 10**9, "output_dim": 2}, [None, 4])]),
            {"layers/words/vars/0": (10, 2)}),
        ["'bomb/words' (Embedding, input_dim=1000000000, output_dim=2) declares 2,000,000,000", "stores only 20"],
    ),
    "keras-nested-gru-10gb": (
        lambda p: _declaring_keras(p.with_suffix(".keras"), _model("Functional", "outer", [
            _ids_input(8), _model("Sequential", "inner", [_layer("GRU", {"name": "gru", "units": 30_000}, [None, 5, 8])])]), {}),
        ["'outer/inner/gru' (GRU, units=30000)", "stores only 0"],
    ),
    "keras-dense-over-the-size-limit": (
        lambda p: _declaring_keras(p.with_suffix(".keras"), _model("Sequential", "wide", [
            _ids_input(8), _layer("Dense", {"name": "dense", "units": 10**9}, [None, 8])]), {"layers/dense/vars/0": (8, 4)}),
        ["'wide/dense' (Dense, units=1000000000)", "CLOUDML_MAX_MODEL_BYTES"],
    ),
    "h5-dense-12gb": (
        # A legacy .h5 records no input shapes: the shape comes down the Sequential model from its input.
        lambda p: _h5_weights(p.with_suffix(".h5"), {"model_weights/dense/dense/kernel": (2, 4)}, model_config=_model("Sequential", "legacy", [
            _layer("InputLayer", {"batch_shape": [None, 2], "dtype": "float32", "name": "x"}),
            _layer("Dense", {"name": "dense", "units": 10**9})])),
        ["'legacy/dense' (Dense, units=1000000000) declares 3,000,000,000", "stores only 8"],
    ),
    "keras-einsum-dense-8gb": (
        lambda p: _declaring_keras(p.with_suffix(".keras"), _model("Functional", "einsum", [
            _ids_input(16), _layer("EinsumDense", {"name": "proj", "equation": "ab,bc->ac", "output_shape": [125_000_000]}, [None, 16])]), {}),
        ["'einsum/proj' (EinsumDense, equation='ab,bc->ac', output_shape=[125000000]) declares 2,000,000,000"],
    ),
    "h5-tf-keras-2-wide-input-4gb": (
        # As tf.keras 2 wrote configs: no modules, the input's shape on the first layer; the bomb is its width.
        lambda p: _h5_weights(p.with_suffix(".h5"), {"model_weights/dense/dense/bias": (1000,)}, model_config={"class_name": "Sequential", "config": {
            "name": "sequential", "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 10**6], "dtype": "float32", "name": "x"}},
                {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.5}},
                {"class_name": "Dense", "config": {"name": "dense", "units": 1000, "use_bias": True}}]}}),
        ["'sequential/dense' (Dense, units=1000) declares 1,000,001,000", "stores only 1,000"],
    ),
}


@pytest.mark.parametrize("case", DECLARING_FILES)
def test_a_file_whose_config_declares_gigabytes_it_does_not_store_is_refused_at_once_before_keras(tmp_path, case):
    make, messages = DECLARING_FILES[case]
    model = make(tmp_path / "model")
    assert model.stat().st_size < 64 * 1024
    started = time.monotonic()
    result, imported, max_rss = _package_reporting(model, tmp_path / "out", tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert model.name in result.stderr and all(m in result.stderr for m in messages), result.stderr
    assert len(imported) == 2 and not any(imported), result.stderr
    assert max_rss < 400 * 1024, f"the refusal took {max_rss} KiB"
    assert elapsed < 30, f"the refusal took {elapsed:.1f} s"
    assert _files_below(tmp_path / "out") == []


def test_a_layer_type_cloudml_does_not_know_is_not_refused_on_guesswork(tmp_path):
    config = _model("Sequential", "mine", [_ids_input(4), _layer("HugeButUnknown", {"name": "h", "units": 10**9}, [None, 4])])
    model = _declaring_keras(tmp_path / "model.keras", config, {})
    check_keras_zip(model, what=model)  # Keras refuses it later, as a layer it does not know


def test_a_config_is_refused_for_what_its_file_does_not_store_not_for_its_size(tmp_path):
    config = _model("Sequential", "big", [_ids_input(4), _layer("Embedding", {"name": "e", "input_dim": 3000, "output_dim": 2000}, [None, 4])])
    whole = _declaring_keras(tmp_path / "whole.keras", config, {"layers/e/vars/0": (3000, 2000)})  # 24 MB, all stored
    check_keras_zip(whole, what=whole)
    part = _declaring_keras(tmp_path / "part.keras", config, {"layers/e/vars/0": (300, 2000)})
    with pytest.raises(ModelError) as err:
        check_keras_zip(part, what=part)
    assert "declares 6,000,000 parameters (22.9 MiB) but stores only 600,000" in err.value.message
    with pytest.raises(ModelError) as err:
        check_keras_zip(part, what=part, limits=Limits(max_bytes=16 * MiB))  # what it declares is over the limit
    assert "'big/e' (Embedding, input_dim=3000, output_dim=2000)" in err.value.message and "CLOUDML_MAX_MODEL_BYTES" in err.value.message


@pytest.mark.slow
def test_the_seed_models_package_as_h5_and_as_keras(seed_models, tmp_path):
    import keras

    for name, seed in seed_models.items():
        keras_file = tmp_path / f"{name}.keras"
        keras.models.load_model(seed.path).save(keras_file)  # compiled: the optimizer's variables stored too
        for model in (seed.path, keras_file):
            packaged = package_model(model, tmp_path / f"out-{model.name}", archive=False)
            assert (packaged.version_dir / "saved_model.pb").is_file()


@pytest.mark.slow
def test_a_quantized_model_is_not_refused_for_the_weights_its_packing_saves(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4096,)), keras.layers.Dense(2048), keras.layers.Embedding(8000, 1000)])
    model.quantize("int4")  # 16 M parameters declared in float, stored packed two to a byte: 8.5 M values
    model.save(tmp_path / "int4.keras")
    check_keras_zip(tmp_path / "int4.keras", what="int4.keras")


def _zoo():
    """A Functional model holding every layer type cloudml counts, wrappers and a nested model."""
    import keras
    from keras import layers

    inner = keras.Sequential([keras.Input((8,)), layers.Dense(6), layers.BatchNormalization(center=False), layers.PReLU()], name="inner")
    seq, img = keras.Input((16, 12), name="seq"), keras.Input((10, 10, 3), name="img")
    vol, tok = keras.Input((6, 6, 6, 2), name="vol"), keras.Input((7,), dtype="int32", name="tok")
    frames = keras.Input((3, 5, 5, 2), name="frames")
    a = layers.Conv1D(5, 3, padding="same")(seq)
    a = layers.SeparableConv1D(4, 3, depth_multiplier=2)(a)
    a = layers.DepthwiseConv1D(3, depth_multiplier=3, use_bias=False)(a)
    a = layers.Conv1DTranspose(6, 3, strides=2)(a)
    a = layers.Bidirectional(layers.LSTM(5, return_sequences=True))(a)
    a = layers.Bidirectional(layers.GRU(3, reset_after=False), backward_layer=layers.GRU(4, go_backwards=True))(a)
    a = inner(layers.Normalization()(layers.Dense(8)(a)))
    b = layers.Conv2D(8, 3, groups=1)(img)
    b = layers.Conv2D(8, 3, groups=4, use_bias=False)(b)
    b = layers.DepthwiseConv2D(2)(layers.SeparableConv2D(6, 3, padding="same")(b))
    b = layers.GroupNormalization(groups=2)(layers.LayerNormalization(axis=[-2, -1])(layers.Conv2DTranspose(4, 3)(b)))
    b = layers.GlobalAveragePooling2D()(b)
    c = layers.Flatten()(layers.Conv3DTranspose(2, 2)(layers.Conv3D(3, 2)(vol)))
    e = layers.Embedding(50, 9)(tok)
    e = layers.SimpleRNN(4, return_sequences=True)(layers.MultiHeadAttention(num_heads=2, key_dim=5, value_dim=3)(e, e))
    e = layers.EinsumDense("abc,cd->abd", output_shape=(7, 6), bias_axes="d")(layers.TimeDistributed(layers.Dense(3))(e))
    e = layers.RNN(layers.StackedRNNCells([layers.LSTMCell(4), layers.GRUCell(2)]))(e)
    f = layers.Flatten()(layers.ConvLSTM2D(3, 2)(frames))
    out = layers.Dense(2, dtype="float64")(layers.Concatenate()([a, b, c, e, f]))
    return keras.Model([seq, img, vol, tok, frames], out, name="zoo")


def _legacy_sequential():
    """A Sequential model whose legacy .h5 records only its input's shape: the rest is worked out."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((20, 20, 1)), layers.Conv2D(4, 3, strides=2, padding="same"), layers.MaxPooling2D(2),
        layers.Conv2D(5, 3, dilation_rate=2), layers.Flatten(), layers.Dense(7), layers.Reshape((7, 1)),
        layers.Conv1D(3, 2, padding="causal"), layers.LSTM(4, return_sequences=True), layers.GRU(3), layers.Dense(2),
    ], name="legacy")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["keras", "h5"])
@pytest.mark.parametrize("build", [_zoo, _legacy_sequential], ids=["functional-zoo", "legacy-sequential"])
def test_what_a_config_declares_is_what_keras_allocates_for_each_layer(tmp_path, build, suffix):
    """No layer is ever counted above what Keras allocates for it (no genuine model is refused),
    and each counts in full (Normalization's running count aside), from the file alone."""
    import h5py
    import keras

    model = build()
    path = tmp_path / f"model.{suffix}"
    model.save(path)
    with zipfile.ZipFile(path) if suffix == "keras" else h5py.File(path) as saved:
        config = json.loads(saved.read("config.json") if suffix == "keras" else saved.attrs["model_config"])
    counted: dict[str, int] = {}
    for layer in declared_variables(config):
        parts = layer.path.split("/")
        key = "/".join(parts[: 3 if parts[1] == "inner" else 2])  # the top-level layer, or the nested model's
        counted[key] = counted.get(key, 0) + layer.params
    allocated = {f"{model.name}/{layer.name}": layer.count_params() for layer in model.layers if not isinstance(layer, keras.Model)}
    allocated.update({f"{model.name}/{m.name}/{layer.name}": layer.count_params()
                      for m in model.layers if isinstance(m, keras.Model) for layer in m.layers})
    for key, params in allocated.items():
        expected = params - 1 if key.split("/")[-1].startswith("normalization") else params
        assert counted.get(key, 0) == expected, (key, counted.get(key), params)


# --- broken archives: a clear error with exit 3, through package and deploy alike ----------

def _truncated(path: Path) -> Path:
    whole = _tar_gz(path.with_name("whole.tar.gz"), [("1/saved_model.pb", os.urandom(2 * MiB))]).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _plain_tar(members: list[tuple[str, bytes]]) -> tuple[bytes, list[int]]:
    """An uncompressed tar of `members`, and the offsets where each member after the first starts."""
    buffer, starts = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            starts.append(buffer.tell())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), starts[1:]


_TWO_MEMBERS = [("1/saved_model.pb", os.urandom(3000)), ("1/variables/variables.index", os.urandom(700))]


def _plain_tar_cut_at_a_member_boundary(path: Path) -> Path:
    whole, starts = _plain_tar(_TWO_MEMBERS)
    path.write_bytes(whole[: starts[0]])  # the first member whole, then nothing: no end-of-archive marker
    return path


def _plain_tar_cut_in_a_member(path: Path) -> Path:
    whole, _ = _plain_tar(_TWO_MEMBERS)
    path.write_bytes(whole[:2000])
    return path


def _tar_gz_of_a_tar_cut_at_a_member_boundary(path: Path) -> Path:
    """A complete gzip stream of a cut tar: gzip's own check passes, the tar's must not."""
    whole, starts = _plain_tar(_TWO_MEMBERS)
    path.write_bytes(gzip.compress(whole[: starts[0]], mtime=0))
    return path


BROKEN_ARCHIVES = {
    "truncated": (_truncated, "truncated"),
    "plain-tar-cut-at-a-member-boundary": (_plain_tar_cut_at_a_member_boundary, "is truncated"),
    "plain-tar-cut-in-a-member": (_plain_tar_cut_in_a_member, "is truncated"),
    "tar-gz-of-a-tar-cut-at-a-member-boundary": (_tar_gz_of_a_tar_cut_at_a_member_boundary, "is truncated"),
    "empty-name": (lambda p: _tar_gz(p, [("", b"x")]), "empty name"),
    "file-then-a-path-under-it": (lambda p: _tar_gz(p, [("1", b"x"), ("1/saved_model.pb", b"y")]), "holds as a file"),
    "a-name-twice": (lambda p: _tar_gz(p, [("1/saved_model.pb", b"x"), ("1/saved_model.pb", b"y")]), "twice"),
    "not-a-tar": (lambda p: p.write_bytes(os.urandom(4096)) and p, "not a tar archive"),
}


@pytest.mark.parametrize("case", BROKEN_ARCHIVES)
def test_cloudml_package_refuses_a_broken_archive_clearly_and_leaves_nothing(tmp_path, case):
    make, message = BROKEN_ARCHIVES[case]
    result = _package(make(tmp_path / "model.tar.gz"), tmp_path / "out")
    assert result.returncode == 3, result.stderr
    assert message in result.stderr and "model.tar.gz" in result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
    assert "hint:" in result.stderr
    assert _files_below(tmp_path / "out") == []


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated", "empty-name", "file-then-a-path-under-it"])
def test_cloudml_deploy_refuses_a_broken_archive_clearly_and_leaves_nothing(tmp_path, home, case):
    make, message = BROKEN_ARCHIVES[case]
    result = run_cli("deploy", make(tmp_path / "model.tar.gz"), "--name", "broken", "--provider", "local", home=home, timeout=180)
    assert result.returncode == 3, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    leftovers = [p for p in _files_below(home / "deployments") if p.name != "last-failed.log"]
    assert leftovers == []
    assert "broken" not in run_cli("list", "--provider", "local", home=home).stdout


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_a_tar_cut_anywhere_before_its_end_marker_is_refused_as_truncated_and_a_complete_one_extracts(tmp_path, compress):
    whole, starts = _plain_tar(_TWO_MEMBERS)
    end = starts[-1] + 512 + 1024 + 1024  # the last header, its data in 512-byte blocks, two zero blocks
    assert whole[end - 1024 : end] == bytes(1024) and whole[end - 1536 : end - 1024] != bytes(512)
    for cut in sorted({*range(512, end, 512), *starts, 2000, end - 1}):
        archive = tmp_path / f"cut-{cut}.tar.gz"
        archive.write_bytes(gzip.compress(whole[:cut], mtime=0) if compress else whole[:cut])
        with pytest.raises(ModelError) as err:
            extract_archive(archive, tmp_path / f"out-{cut}")
        assert f"{archive} is truncated" in err.value.message, (cut, err.value.message)
        assert "again" in (err.value.hint or "")
        assert not (tmp_path / f"out-{cut}").exists()
    for cut in (end, len(whole)):  # the end marker, with or without the padding tar adds after it
        archive = tmp_path / f"whole-{cut}.tar.gz"
        archive.write_bytes(gzip.compress(whole[:cut], mtime=0) if compress else whole[:cut])
        out = extract_archive(archive, tmp_path / f"out-whole-{cut}")
        assert (out / "1" / "variables" / "variables.index").read_bytes() == _TWO_MEMBERS[1][1]


@pytest.mark.parametrize("block, message", [(os.urandom(512), "invalid header"), (bytes(512), "a lone zero block")], ids=["garbage", "zeros"])
def test_a_block_that_is_no_tar_header_after_a_member_is_refused_as_corrupt_not_taken_for_the_end(tmp_path, block, message):
    whole, starts = _plain_tar(_TWO_MEMBERS)
    archive = tmp_path / "model.tar"
    archive.write_bytes(whole[: starts[0]] + block + whole[starts[0] :])  # tarfile alone would drop the second member
    with pytest.raises(ModelError) as err:
        extract_archive(archive, tmp_path / "out")
    assert "corrupt" in err.value.message and f"{message} at byte {starts[0]}" in err.value.message, err.value.message
    assert not (tmp_path / "out").exists()


def test_a_refused_archive_leaves_what_was_in_the_target_folder_alone(tmp_path):
    target = tmp_path / "scratch"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    archive = _tar_gz(tmp_path / "model.tar.gz", [("1/variables/a", b"x"), ("1/variables/a/b", b"y")])
    with pytest.raises(ModelError) as err:
        extract_archive(archive, target)
    assert err.value.exit_code == 3
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_tarballs_as_tar_and_sagemaker_write_them_still_extract(tmp_path):
    """`tar czf model.tar.gz -C folder .` names members "./1/...", with "./" first; plain tar too."""
    folder = tmp_path / "folder"
    (folder / "1" / "variables").mkdir(parents=True)
    (folder / "1" / "saved_model.pb").write_bytes(b"pb")
    (folder / "1" / "variables" / "variables.index").write_bytes(b"ix")
    for mode, name in [("w:gz", "model.tar.gz"), ("w", "model.tar")]:
        with tarfile.open(tmp_path / name, mode) as tar:
            tar.add(folder, arcname=".")
        out = extract_archive(tmp_path / name, tmp_path / f"out-{name}")
        assert (out / "1" / "saved_model.pb").read_bytes() == b"pb"
        assert (out / "1" / "variables" / "variables.index").read_bytes() == b"ix"


# --- what held and must keep holding: broken or code-carrying Keras files ---------------------

def _tiny_keras_model():
    import keras

    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


@pytest.fixture(scope="module")
def saved_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    model = _tiny_keras_model()
    files = {"keras": folder / "tiny.keras", "h5": folder / "tiny.h5"}
    model.save(files["keras"])
    model.save(files["h5"])
    return files


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["keras", "h5"])
@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_a_damaged_keras_or_h5_file_is_refused_with_exit_3(saved_files, tmp_path, suffix, damage):
    whole = saved_files[suffix].read_bytes()
    data = {"truncated": whole[: len(whole) // 2], "random": os.urandom(len(whole)), "empty": b""}[damage]
    model = tmp_path / f"model.{suffix}"
    model.write_bytes(data)
    with pytest.raises(ModelError) as err:
        package_model(model, tmp_path / "out")
    assert err.value.exit_code == 3 and "model." + suffix in err.value.message
    assert not (tmp_path / "out" / "model").exists()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_a_lambda_layer_in_the_file_is_refused_and_its_code_never_runs(tmp_path, suffix):
    import keras

    marker = tmp_path / "the-lambda-ran"
    code = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(code)(inputs))
    marker.unlink()  # building the model ran it once, here
    model.save(tmp_path / f"lambda.{suffix}")
    result = _package(tmp_path / f"lambda.{suffix}", tmp_path / "out")
    assert result.returncode == 3
    assert "Lambda" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_custom_layer_in_the_file_is_refused_and_its_module_never_imported(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    marker = tmp_path / "the-module-ran"
    (plugins / "evil_layers.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    config = (
        '{"module": "keras", "class_name": "Sequential", "registered_name": null, "config": {"name": "s", "layers": ['
        '{"module": "keras.layers", "class_name": "InputLayer", "registered_name": null, '
        '"config": {"batch_shape": [null, 4], "dtype": "float32", "name": "x"}},'
        '{"module": "evil_layers", "class_name": "Evil", "registered_name": "Evil", "config": {"name": "evil"}}]}}'
    )
    model = tmp_path / "custom.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.0.0"}')
        archive.writestr("config.json", config)
    result = _package(model, tmp_path / "out", env={"PYTHONPATH": f"{REPO}{os.pathsep}{plugins}"})
    assert result.returncode == 3, result.stderr
    assert "Evil" in result.stderr
    assert not marker.exists()
