"""The TensorFlow version a model was saved by, read without TensorFlow (image choice happens
before packaging)."""

from __future__ import annotations

import tarfile

import pytest

from cloudml.packaging.metadata import installed_tensorflow, tensorflow_version
from cloudml.packaging.source import inspect_source


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def serve(self, x):
            return {"y": x * 2.0}

    module = Double()
    path = tmp_path_factory.mktemp("sm") / "double" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path, tf.__version__


@pytest.mark.slow
def test_a_saved_model_names_the_tensorflow_that_wrote_it(saved_model, tmp_path):
    path, version = saved_model
    assert tensorflow_version(inspect_source(path)) == version
    assert tensorflow_version(inspect_source(path.parent)) == version  # the base folder, version 1 inside


@pytest.mark.slow
def test_a_truncated_saved_model_says_nothing(saved_model, tmp_path):
    path, _ = saved_model
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes((path / "saved_model.pb").read_bytes()[:7])
    assert tensorflow_version(inspect_source(broken)) is None
    (broken / "saved_model.pb").write_bytes(b"\xff" * 64)
    assert tensorflow_version(inspect_source(broken)) is None


def test_a_keras_file_is_exported_by_the_installed_tensorflow(tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    assert tensorflow_version(inspect_source(path)) == installed_tensorflow()


def test_a_package_and_an_archive_say_nothing_before_packaging(tmp_path):
    # Their manifest's TensorFlow version does not say which backend the package was made for
    # (ONNX Runtime or TensorFlow): the deploy reads the manifest once packaged.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "cloudml-manifest.json").write_text('{"tensorflow_version": "2.17.1"}')
    assert tensorflow_version(inspect_source(package)) is None
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(package / "cloudml-manifest.json", arcname="cloudml-manifest.json")
    assert tensorflow_version(inspect_source(archive)) is None
