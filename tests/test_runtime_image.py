"""The serving runtime image: what goes in it (exactly what the entrypoint imports), and, against a
real registry and podman, that the ONNX image built on the offline Debian base serves a package
mounted where SageMaker puts it, as uid 10001, with no TensorFlow, and is built once."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import DEBS, PODMAN_FLAGS, PODMAN_RUN_FLAGS, REPO, WHEELHOUSE, free_port, require_wheelhouse, start_registry

from cloudml.errors import ExitCode
from cloudml.images import debian, layers, runtime

sys.path.insert(0, str(REPO / "tools"))
import check_imports  # noqa: E402


def _dist(requirement: str) -> str:
    return requirement.split("==")[0].lower().replace("_", "-")


# -- what the image is made of ---------------------------------------------------------------------


def _entrypoint_closure() -> tuple[set[str], set[str]]:
    """The cloudml modules `python -m cloudml.serving.entrypoint` can import (lazy imports too),
    and the names of everything else they import."""
    modules = check_imports.discover()
    seen, todo, outside = set(), ["cloudml.serving.entrypoint"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += check_imports.imported(modules[name], name, modules)
        for node in ast.walk(ast.parse(modules[name].read_text())):
            if isinstance(node, ast.Import):
                outside |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                outside.add(node.module)
    return seen, {m for m in outside if m.split(".")[0] not in {"cloudml", "__future__", *sys.stdlib_module_names}}


def test_the_image_installs_exactly_the_distributions_the_entrypoint_imports():
    cloudml_modules, third_party = _entrypoint_closure()
    by_module = importlib.metadata.packages_distributions()
    # `google` is a namespace many distributions share: the entrypoint imports google.cloud.storage alone.
    assert {m for m in third_party if m.startswith("google")} == {"google.cloud"}
    imported = {_dist(d) for m in third_party if not m.startswith("google") for d in by_module.get(m.split(".")[0], [m])} | {"google-cloud-storage"}
    backends = {"onnxruntime", "tensorflow", "tensorflow-cpu"}
    installed = {_dist(r) for r in runtime.requirements("onnx", "1.32.0")}
    assert imported - backends == installed - {"onnxruntime"}
    # ... and the runtime layer holds every cloudml module they need, and nothing of the CLI, providers or emulators.
    needed = {m.split(".")[1] for m in cloudml_modules if m != "cloudml"}
    assert needed <= {Path(n).stem for n in runtime.RUNTIME_MODULES}


def test_the_runtime_layer_alone_runs_the_entrypoint_in_a_clean_interpreter(tmp_path):
    layer = runtime.runtime_layer(tmp_path / "blobs")
    with tarfile.open(layer.path) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "root", filter="data")
    assert not any(p in n for n in names for p in ("/providers", "/emulators", "/cli", "/images", "/packaging", "__pycache__"))
    app = tmp_path / "root" / runtime.APP_DIR
    code = (f"import sys; sys.path.insert(0, {str(app)!r}); import cloudml.serving.entrypoint as e, cloudml.backends.onnx, cloudml.backends.tensorflow; "
            "print(e.__file__)")
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(app))
    assert runtime.runtime_layer(tmp_path / "again").digest == layer.digest


def test_a_tensorflow_image_holds_the_tensorflow_that_saved_the_model_and_the_runtime():
    onnx_pins = runtime.requirements("onnx", "1.32.0")
    tf_pins = runtime.requirements("tensorflow", "2.16.2")
    assert tf_pins[0] == "tensorflow-cpu==2.16.2"
    assert {_dist(p) for p in tf_pins} == ({_dist(p) for p in onnx_pins} - {"onnxruntime"}) | {"tensorflow-cpu"}
    assert "numpy" in tf_pins  # left to the TensorFlow's own numpy pin (an older TensorFlow needs numpy 1)
    assert not any(p.startswith("onnxruntime") for p in tf_pins) and not any("tensorflow" in p for p in onnx_pins)
    labels = runtime.settings("tensorflow", "2.16.2", tf_pins).labels
    assert (labels["io.cloudml.runtime"], labels["io.cloudml.framework.version"]) == ("tensorflow", "2.16.2")


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(Exception, match="torch") as info:
        runtime.requirements("torch", "2.13.0")
    assert info.value.exit_code == ExitCode.BAD_INPUT and "onnx" in info.value.hint


def test_the_tag_names_the_backend_and_changes_with_what_decides_the_bytes():
    key = lambda pins, app="sha256:a", base="sha256:b": runtime.image_key(pins, app, base, python_version="3.11", platforms=("p",))
    pins = runtime.requirements("onnx", "1.32.0")
    assert key(pins) == key(list(reversed(pins)))
    assert len({key(pins), key(pins, app="sha256:c"), key(pins, base="sha256:c"), key(pins[:-1])}) == 4


# -- built, pushed and run -------------------------------------------------------------------------


def _podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    """A registry holding the offline stand-in for python:3.11-slim (Debian bookworm's python3.11)."""
    if not any(DEBS.glob("*.deb")) and not (debian.shutil.which("apt-get") and debian.shutil.which("dpkg-deb")):
        pytest.skip(f"no Debian .debs in {DEBS} and no apt-get to fetch them (run `make test-assets` on Debian)")
    root = tmp_path_factory.mktemp("runtime-registry")
    host, proc = start_registry(root)
    start = time.monotonic()
    base = debian.python_base_image(f"{host}/library/python:3.11-slim", cache=DEBS, work_dir=root)
    print(f"\noffline base image: {time.monotonic() - start:.1f} s, {base.bytes_uploaded:,} bytes pushed")
    yield host, f"{host}/library/python:3.11-slim"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cloudml.packaging import package_model

    out = tmp_path_factory.mktemp("onnx-package")
    w = numpy_helper.from_array((np.arange(12, dtype=np.float32).reshape(4, 3) - 5) / 7, "W")
    b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3], dtype=np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]), helper.make_node("Tanh", ["z"], ["y"])]
    graph = helper.make_graph(nodes, "lin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / "lin.onnx")
    packaged = package_model(out / "lin.onnx", out / "pkg", archive=False)
    # As SageMaker unpacks model.tar.gz: readable by the container's user, whoever that is.
    for path in [packaged.folder, *packaged.folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return packaged.folder, out / "lin.onnx"


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise AssertionError(f"the container did not answer {url}: {proc.stdout.read() if proc.poll() is not None else 'still starting'}")


def _delete_manifest(host: str, repo: str, digest: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{digest}", method="DELETE"), timeout=30).close()


@pytest.mark.slow
@pytest.mark.skipif(not debian.shutil.which("podman"), reason="podman is not installed")
def test_the_onnx_runtime_image_serves_a_mounted_package_as_uid_10001_and_is_built_once(base_image, onnx_package, tmp_path):
    import onnxruntime

    require_wheelhouse(WHEELHOUSE, "onnx", runtime.default_version("onnx"))
    host, base = base_image
    build = lambda: runtime.runtime_image("onnx", target_repository=f"{host}/cloudml/runtime", base=base,
                                          find_links=[WHEELHOUSE], no_index=True, work_dir=tmp_path)
    start = time.monotonic()
    image = build()
    elapsed = time.monotonic() - start
    assert image.built and image.tag.startswith(f"{runtime.__version__}-onnxruntime-{onnxruntime.__version__}-cpu-")
    deps = next(b for b in image.result.blobs if b.what.startswith("layer dependencies"))
    print(f"\nruntime image: built and pushed in {elapsed:.1f} s, {image.bytes_uploaded:,} bytes uploaded (dependency layer {deps.size:,})")

    # No TensorFlow in it, and small: read the pushed dependency layer back from the registry.
    blob = tmp_path / "deps.tar.gz"
    with urllib.request.urlopen(f"http://{host}/v2/cloudml/runtime/blobs/{deps.digest}", timeout=120) as r:
        blob.write_bytes(r.read())
    with tarfile.open(blob) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert any(n.startswith("opt/cloudml/deps/onnxruntime/") for n in names)
    top = {n.split("/")[3].split("-")[0].lower() for n in names if n.count("/") >= 3}
    assert "onnxruntime" in top and not top & {"tensorflow", "tensorflow_cpu", "keras", "tf_keras", "tensorboard"}, sorted(top)
    unpacked = sum(m.size for m in members)
    assert unpacked < 200 << 20, f"the dependency layer unpacks to {unpacked:,} bytes"

    config = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{image.pinned}"],
                                       check=True, capture_output=True, text=True, timeout=60).stdout)["config"]
    assert config["User"] == "10001" and "8080/tcp" in config["ExposedPorts"]
    assert config["Labels"]["io.cloudml.runtime.version"] == onnxruntime.__version__
    assert config["Labels"]["org.opencontainers.image.base.name"] == base

    folder, onnx_file = onnx_package
    port, name = free_port(), f"cloudml-runtime-test-{os.getpid()}"
    proc = subprocess.Popen(["podman", *PODMAN_FLAGS, "run", "--rm", "--name", name, *PODMAN_RUN_FLAGS, "--tls-verify=false",
                             "-v", f"{folder}:/opt/ml/model:ro", "-e", f"SAGEMAKER_BIND_TO_PORT={port}", image.pinned, "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}/ping", proc)
        print(f"container (pull included) answered /ping after {ready:.1f} s")
        x = [[1.0, 2.0, 3.0, 4.0], [-0.5, 0.25, 0.0, 2.0]]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps({"instances": x}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            got = np.asarray(json.load(r)["predictions"], dtype=np.float32)
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got, session.run(None, {"x": np.asarray(x, dtype=np.float32)})[0], atol=1e-6)
        top = _podman("top", name, "user", "args", timeout=30)
        assert any(line.split()[:1] == ["10001"] and "cloudml.serving.entrypoint" in line for line in top.stdout.splitlines()), top.stdout
    finally:
        _podman("stop", "-t", "3", name, timeout=60)
        proc.wait(60)
        _podman("rmi", "--force", image.pinned, timeout=120)  # leave the machine's image store as it was

    # Every later deploy finds the tag: nothing built, nothing pushed.
    again = build()
    assert (again.built, again.bytes_uploaded, again.digest, again.tag) == (False, 0, image.digest, image.tag)
    # Rebuilt from scratch (the tag gone): the same digest, every blob already there.
    _delete_manifest(host, "cloudml/runtime", image.digest)
    rebuilt = build()
    assert rebuilt.built and rebuilt.digest == image.digest and rebuilt.result.uploaded == []


@pytest.mark.slow
def test_the_offline_base_is_one_reproducible_layer_with_a_writable_tmp(tmp_path):
    if not any(DEBS.glob("*.deb")):
        pytest.skip(f"no Debian .debs in {DEBS} (run `make test-assets` on Debian)")
    debs = debian.download_debs(DEBS)
    one = debian.base_layer(debian.root_filesystem(debs, tmp_path / "one"), tmp_path / "blobs-one")
    two = debian.base_layer(debian.root_filesystem(debs, tmp_path / "two"), tmp_path / "blobs-two")
    assert (one.digest, one.diff_id) == (two.digest, two.diff_id)
    with tarfile.open(one.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert oct(members["tmp"].mode) == "0o1777" and members["usr/bin/python3"].issym()
    assert "etc/ssl/certs/ca-certificates.crt" in members and not any(n.startswith("usr/share/doc/") for n in members)
    assert layers.MTIME == members["usr/bin/python3.11"].mtime
    # The interpreter in it runs the standard library's native modules (chroot needs root; skip otherwise).
    if os.geteuid() == 0:
        code = "import ssl, json, asyncio, sqlite3, ctypes, lzma, bz2, uuid, decimal; print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 0)"
        run = subprocess.run(["chroot", str(tmp_path / "one"), "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=60)
        assert run.stdout.strip() == "True", run.stderr
