"""Packaging: every accepted model format becomes the same servable layout, reproducibly and safely."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from cloudml.errors import ModelError, UnsafeArchiveError
from cloudml.packaging import inspect_source, package_model
from cloudml.packaging.archive import extract_archive
from cloudml.packaging.hashing import content_hash

pytestmark = pytest.mark.slow


def _signature_fn(version_dir: Path):
    import tensorflow as tf

    return tf.saved_model.load(str(version_dir)).signatures["serving_default"]


@pytest.fixture(scope="module")
def cnn(seed_models):
    return seed_models["cnn"]


@pytest.fixture(scope="module")
def exported(cnn, tmp_path_factory) -> Path:
    """The CNN as a plain SavedModel folder (what `model.export()` writes), unversioned."""
    path = tmp_path_factory.mktemp("exported") / "cnn_savedmodel"
    cnn.keras_model().export(str(path), verbose=False)
    return path


def _check_package(packaged, cnn, *, version: int = 1):
    folder = packaged.folder
    assert (folder / str(version) / "saved_model.pb").is_file()
    assert (folder / str(version) / "variables").is_dir()
    manifest = json.loads((folder / "cloudml-manifest.json").read_text())
    assert manifest["model_version"] == version
    assert manifest["tensorflow_version"].startswith("2.")
    assert manifest["content_hash"].startswith("sha256:")
    assert manifest["signature"]["name"] == "serving_default"
    assert manifest["signature"]["inputs"] == {"pixels": {"dtype": "float32", "shape": [None, 784]}}
    assert manifest["signature"]["outputs"] == {"output_0": {"dtype": "float32", "shape": [None, 10]}}
    served = _signature_fn(folder / str(version))(pixels=np.asarray(cnn.instances, dtype=np.float32))["output_0"].numpy()
    assert np.allclose(served, cnn.reference(), atol=1e-5)


def test_h5_keras_and_savedmodel_sources_package_to_the_same_layout(cnn, exported, tmp_path):
    keras_file = tmp_path / "cnn.keras"
    cnn.keras_model().save(keras_file)
    for source, out in [(cnn.path, "h5"), (keras_file, "keras"), (exported, "sm")]:
        packaged = package_model(source, tmp_path / out)
        _check_package(packaged, cnn)
        assert packaged.manifest.source_format in ("h5", "keras", "saved_model")
        with tarfile.open(packaged.archive) as tar:
            names = tar.getnames()
        assert "1/saved_model.pb" in names and "cloudml-manifest.json" in names


def test_versioned_savedmodel_folder_keeps_its_highest_version(cnn, exported, tmp_path):
    import shutil

    root = tmp_path / "versions"
    shutil.copytree(exported, root / "3")
    shutil.copytree(exported, root / "7")
    packaged = package_model(root, tmp_path / "out")
    assert packaged.manifest.model_version == 7
    _check_package(packaged, cnn, version=7)
    # An explicit version wins.
    packaged = package_model(root, tmp_path / "out2", version=12)
    _check_package(packaged, cnn, version=12)


def test_same_input_gives_byte_identical_archive(cnn, exported, tmp_path):
    # tf2onnx's output is not byte-reproducible (README), so the files to archive are compared
    # without a conversion; what is converted is reused below, as a deploy reuses its package.
    first = package_model(exported, tmp_path / "a", runtime="tensorflow").archive.read_bytes()
    # Different file times must not matter.
    for path in exported.rglob("*"):
        os.utime(path, (time.time() + 1000, time.time() + 1000))
    second = package_model(exported, tmp_path / "b", runtime="tensorflow").archive.read_bytes()
    assert first == second
    # A .h5 packaged again into the same folder reuses its export: same archive bytes.
    a = package_model(cnn.path, tmp_path / "h5").archive.read_bytes()
    b = package_model(cnn.path, tmp_path / "h5").archive.read_bytes()
    assert a == b


def test_archive_members_are_normalised(cnn, tmp_path):
    packaged = package_model(cnn.path, tmp_path / "p")
    with tarfile.open(packaged.archive) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members if m.isdir()) + sorted(m.name for m in members if m.isfile())
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert all(not (m.issym() or m.islnk()) for m in members)


def test_savedmodel_without_serving_default_is_refused_with_a_hint(tmp_path):
    import tensorflow as tf

    class Plain(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def double(self, x):
            return x * 2

    module = Plain()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"other": module.double})
    with pytest.raises(ModelError) as err:
        package_model(tmp_path / "sm", tmp_path / "out")
    assert "serving_default" in err.value.message and "other" in err.value.message
    assert "model.export" in err.value.hint
    assert not (tmp_path / "out" / "model").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.h5", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no saved_model.pb"),
        (lambda p: (p / "bad.h5").write_bytes(b"not hdf5") and p / "bad.h5", "not a valid HDF5"),
        (lambda p: (p / "bad.keras").write_bytes(b"not zip") and p / "bad.keras", "not a valid .keras"),
        (lambda p: (p / "model.pkl").write_bytes(b"x") and p / "model.pkl", "cannot tell"),
    ],
)
def test_bad_model_paths_say_what_is_accepted(tmp_path, make, message):
    with pytest.raises(ModelError) as err:
        inspect_source(make(tmp_path))
    assert message in err.value.message


def test_cli_package_writes_artifacts_and_fails_cleanly_on_bad_input(cnn, tmp_path):
    result = run_cli("package", cnn.path, "--out", tmp_path / "pkg", "--output", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["archive"]).is_file() and Path(out["folder"], "1", "saved_model.pb").is_file()
    assert out["manifest"]["model_name"] == "cnn"
    bad = run_cli("package", tmp_path / "nope.h5", "--out", tmp_path / "x")
    assert bad.returncode == 3
    assert "does not exist" in bad.stderr and "hint:" in bad.stderr


def _tar_with(tmp_path: Path, add) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar, name: str, data: bytes = b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar, name: str, target: str, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


@pytest.mark.parametrize(
    "add, reason",
    [
        (lambda t: _file(t, "../escape.txt"), "outside"),
        (lambda t: _file(t, "1/../../escape.txt"), "outside"),
        (lambda t: _file(t, "/abs/escape.txt"), "absolute"),
        (lambda t: _link(t, "1/link", "/etc/passwd"), "link"),
        (lambda t: _link(t, "1/hard", "/etc/passwd", tarfile.LNKTYPE), "link"),
    ],
)
def test_extract_refuses_members_that_escape_or_link(tmp_path, add, reason):
    archive = _tar_with(tmp_path, lambda t: (_file(t, "1/ok.txt"), add(t)))
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    assert reason in err.value.message
    # Checked before writing: nothing was extracted, not even the harmless member.
    assert not any(target.rglob("*"))
    assert not (tmp_path / "escape.txt").exists()


def test_serving_a_tarball_with_a_link_is_refused(tmp_path):
    archive = _tar_with(tmp_path, lambda t: (_file(t, "1/saved_model.pb"), _link(t, "1/variables", "/etc")))
    result = run_cli("serve", archive, "--port", "0")
    assert result.returncode == 3
    assert "link" in result.stderr


def test_roundtrip_archive_extracts_identically(cnn, tmp_path):
    packaged = package_model(cnn.path, tmp_path / "p")
    extract_archive(packaged.archive, tmp_path / "x")
    assert content_hash(tmp_path / "x") == content_hash(packaged.folder)


def test_hashing_and_archiving_stream_large_files(tmp_path):
    """A 300 MB weights file must not be read into memory to hash or tar it."""
    folder = tmp_path / "big" / "1"
    folder.mkdir(parents=True)
    with (folder / "variables.data").open("wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse: costs no disk
    code = f"""
import resource, sys
from pathlib import Path
from cloudml.packaging.hashing import content_hash
from cloudml.packaging.archive import write_archive
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
content_hash(Path({str(folder.parent)!r}))
write_archive(Path({str(folder.parent)!r}), Path({str(tmp_path / 'big.tar.gz')!r}))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    grown_mb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown_mb < 64, f"peak memory grew by {grown_mb} MB while hashing/archiving a 300 MB file"


def test_a_deploy_copies_the_model_while_hashing_it_and_removes_what_a_killed_deploy_left(tmp_path):
    from cloudml.packaging import inspect_source, source_hash
    from cloudml.packaging.snapshot import snapshot_model

    model = tmp_path / "weights.onnx"
    model.write_bytes(b"\x08\x07" * 1000)
    parent = tmp_path / "work"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = parent / f".snapshot-{dead.pid}-x"  # a deploy that was killed while it packaged
    running = parent / f".snapshot-{os.getpid()}-y"  # a deploy of this process still at it
    for folder in (abandoned, running):
        folder.mkdir(parents=True)
    source = inspect_source(model)
    with snapshot_model(source, parent) as snapshot:
        assert snapshot.digest == source_hash(source)
        assert snapshot.source.path.read_bytes() == model.read_bytes() and snapshot.source.path.name == model.name
        model.write_bytes(b"rewritten while the deploy runs")
        assert snapshot.source.path.read_bytes() == b"\x08\x07" * 1000  # what was hashed is what gets packaged
    assert not abandoned.exists() and running.is_dir()
    assert sorted(p.name for p in parent.iterdir()) == [running.name]  # this snapshot went with its deploy
