"""Preflight: packaging (and probing) in a child process that reports through a typed result file,
and a deploy's packaging that reads the model once and packages exactly what was hashed."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cloudml.contract import Manifest, Signature, TensorSpec
from cloudml.errors import ConfigError, DeployFailed, ModelError, UnsafeArchiveError
from cloudml.packaging import inspect_source, source_hash
from cloudml.preflight.prepare import outcome, prepare_model
from cloudml.preflight.result import Failed, Packaged, read_result, write_result

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> Manifest:
    spec = TensorSpec(dtype="float32", shape=[None, 3])
    return Manifest(model_name="m", model_version=2, tensorflow_version="2.0", source_format="h5", source_name="m.h5",
                    content_hash="sha256:" + "ab" * 32, signature=Signature(inputs={"x": spec}, outputs={"y": spec}))


# --- the result file and the error table -------------------------------------------------------

def test_a_packaged_result_round_trips_through_the_file(tmp_path):
    written = Packaged(folder=tmp_path / "model", archive=tmp_path / "model.tar.gz", archive_digest="sha256:" + "cd" * 32, manifest=_manifest())
    write_result(tmp_path / "result.json", written)
    assert read_result(tmp_path / "result.json") == written
    packaged = outcome(written, returncode=0, stderr="", model="m.h5")
    assert (packaged.folder, packaged.archive, packaged.archive_digest) == (written.folder, written.archive, written.archive_digest)
    assert packaged.manifest == written.manifest


@pytest.mark.parametrize("error", [
    ModelError("the model is broken", hint="fix it", details="layer 3"),
    ConfigError("bad option", hint="pass -o x=1"),
    UnsafeArchiveError("member is a link", hint="no links"),
])
def test_an_error_from_the_child_comes_back_as_its_class_with_its_hint(tmp_path, error):
    write_result(tmp_path / "result.json", Failed.from_error(error))
    with pytest.raises(type(error)) as raised:
        outcome(read_result(tmp_path / "result.json"), returncode=1, stderr="noise", model="m.h5")
    assert type(raised.value) is type(error)
    assert (raised.value.message, raised.value.hint, raised.value.details) == (error.message, error.hint, error.details)
    assert raised.value.exit_code == error.exit_code


def test_a_model_error_subclass_the_table_lacks_arrives_as_a_model_error():
    class Odd(ModelError):
        pass

    failed = Failed.from_error(Odd("odd", hint="h"))
    assert failed.kind == "ModelError"
    assert type(failed.error()) is ModelError and failed.error().hint == "h"


def test_an_unknown_kind_is_a_model_error_with_the_childs_stderr():
    failed = Failed.from_error(DeployFailed("the cloud said no"))
    assert failed.kind == "DeployFailed" and failed.error() is None
    stderr = "WARNING: All log messages before absl::InitializeLog() is called\nTraceback: the real cause\n"
    with pytest.raises(ModelError) as raised:
        outcome(failed, returncode=1, stderr=stderr, model="m.h5")
    assert type(raised.value) is ModelError
    assert "DeployFailed" in raised.value.message and "the cloud said no" in raised.value.message
    assert raised.value.details == "Traceback: the real cause"  # TensorFlow's noise filtered out
    assert "cloudml package" in raised.value.hint


@pytest.mark.parametrize("content", [None, b"", b"{not json", b'{"status": "packaged", "folder": "x"}', b'{"status": "other"}'])
def test_a_missing_or_garbled_result_file_is_a_model_error_with_stderr(tmp_path, content):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_bytes(content)
    assert read_result(path) is None
    with pytest.raises(ModelError) as raised:
        outcome(read_result(path), returncode=-9, stderr="Killed\n", model="m.h5")
    assert "packaging m.h5 failed (exit -9)" in raised.value.message
    assert raised.value.details == "Killed"


# --- the real child process, on paths that need no TensorFlow --------------------------------

def _evil_archive(tmp_path: Path) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("1/variables")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    return path


def test_the_child_reports_its_error_as_that_error(tmp_path):
    with pytest.raises(UnsafeArchiveError) as raised:
        prepare_model(inspect_source(_evil_archive(tmp_path)), tmp_path / "out", name="evil", version=None, probe=True)
    assert "link" in raised.value.message


def test_a_crashed_child_is_a_model_error_with_its_stderr(tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    model = tmp_path / "m.h5"
    model.write_bytes(_HDF5_MAGIC + b"weights")
    with pytest.raises(ModelError) as raised:
        prepare_model(inspect_source(model), tmp_path / "out", name="m", version=None, probe=False)
    assert "packaging m.h5 failed (exit 1)" in raised.value.message
    assert "FileExistsError" in raised.value.details


@pytest.mark.parametrize("make", ["file", "folder", "archive"])
def test_a_model_changed_after_it_was_hashed_is_refused(tmp_path, make):
    if make == "file":
        model = tmp_path / "m.h5"
        model.write_bytes(_HDF5_MAGIC + b"version one")
        change = lambda: model.write_bytes(_HDF5_MAGIC + b"version two")  # noqa: E731
    elif make == "folder":
        model = tmp_path / "sm"
        (model / "variables").mkdir(parents=True)
        (model / "saved_model.pb").write_bytes(b"graph")
        change = lambda: (model / "variables" / "variables.index").write_bytes(b"new")  # noqa: E731
    else:
        model = tmp_path / "m.tar.gz"
        with tarfile.open(model, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("1/saved_model.pb"), io.BytesIO(b""))
        change = lambda: model.write_bytes(model.read_bytes() + b"\0")  # noqa: E731
    source = inspect_source(model)
    digest = source_hash(source)
    change()
    with pytest.raises(ModelError) as raised:
        prepare_model(source, tmp_path / "out", name="m", version=None, probe=False, digest=digest)
    assert "changed after cloudml hashed it" in raised.value.message and digest in raised.value.message
    assert raised.value.hint
    assert not (tmp_path / "out" / "model").exists() and not (tmp_path / "out" / "model.tar.gz").exists()


# --- the real child, packaging and probing real models -----------------------------------------

@pytest.mark.slow
def test_prepare_packages_probes_and_records_the_digest_it_was_given(seed_models, tmp_path):
    source = inspect_source(seed_models["cnn"].path)
    digest = source_hash(source)
    packaged = prepare_model(source, tmp_path / "work", name="cnn", version=3, probe=True, digest=digest)
    assert packaged.manifest.content_hash == digest
    assert packaged.manifest.model_version == 3 and (packaged.folder / "3" / "saved_model.pb").is_file()
    assert packaged.archive_digest == _sha256(packaged.archive)
    # Again into the same folder: the earlier export is reused, the archive is the same bytes.
    again = prepare_model(source, tmp_path / "work", name="cnn", version=3, probe=False, digest=digest)
    assert again.archive_digest == packaged.archive_digest == _sha256(again.archive)


@pytest.mark.slow
def test_preflight_refuses_a_model_that_cannot_serve(unservable_model, tmp_path):
    with pytest.raises(ModelError) as raised:
        prepare_model(inspect_source(unservable_model), tmp_path / "work", name="broken", version=None, probe=True)
    assert "preflight" in raised.value.message and "this model cannot serve" in raised.value.message
    assert "--skip-preflight" in raised.value.hint


@pytest.mark.slow
def test_the_same_savedmodel_prepared_twice_gives_the_same_archive(unservable_model, tmp_path):
    source = inspect_source(unservable_model)
    first = prepare_model(source, tmp_path / "a", name="m", version=None, probe=False)
    second = prepare_model(source, tmp_path / "b", name="m", version=None, probe=False, digest=source_hash(source))
    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert first.archive_digest == second.archive_digest == _sha256(first.archive)
    assert first.manifest.content_hash == second.manifest.content_hash == source_hash(source)


_READS = """
import sys
from pathlib import Path
from tensorflow.core.protobuf import saved_model_pb2  # imported before measuring: its files are not the model
from cloudml.packaging import inspect_source, package_model
from cloudml.packaging.snapshot import snapshot_model

def read_bytes():
    return int(next(l for l in open("/proc/self/io") if l.startswith("rchar:")).split()[1])

model, out = Path(sys.argv[1]), Path(sys.argv[2])
source = inspect_source(model)
for archive in (False, False, True):
    before = read_bytes()
    with snapshot_model(source, out / "snapshots") as snapshot:  # what a deploy does first: the digest plans it
        package_model(source, out, digest=snapshot.digest, archive=archive, snapshot=snapshot.source.path)
    print(read_bytes() - before)
print(sum(1 for _ in (out / "snapshots").iterdir()))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/<pid>/io to count bytes read")
def test_a_deploy_reads_the_model_once_and_packages_the_copy_it_hashed(unservable_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(unservable_model, model)
    size = 64 << 20
    (model / "assets").mkdir(exist_ok=True)
    with (model / "assets" / "weights.bin").open("wb") as handle:
        handle.truncate(size)  # sparse: costs no disk to read
    out = subprocess.run([sys.executable, "-c", _READS, str(model), str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, reused, archived, snapshots_left = (int(n) for n in out.stdout.split())
    assert size <= first < 1.25 * size, f"hashing and packaging read {first / size:.2f}x the model's size"
    assert size <= reused < 1.25 * size, "an unchanged package is reused: the model is read only to hash it"
    assert archived < 2.25 * size, "the model is read once to hash it, the archive reads the package once"
    assert snapshots_left == 0
    assert (tmp_path / "out" / "model" / "1" / "assets" / "weights.bin").stat().st_size == size
