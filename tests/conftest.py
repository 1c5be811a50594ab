"""Shared fixtures: the seed models (trained by the real example scripts), a private
$CLOUDML_HOME per test, a CLI runner, and one session-wide local deployment per seed model."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The offline AWS (and later GCP, Azure) fixtures users get too: aws_emulator, ...
pytest_plugins = ["cloudml.testing"]
SEED_SCRIPTS = {"autoencoder": "train_autoencoder.py", "cnn": "train_cnn.py", "lstm": "train_lstm.py"}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_cli(*args: str, home: Path | None = None, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `cloudml` CLI in a subprocess, as a user's shell would."""
    full_env = {**os.environ, **(env or {})}
    if home is not None:
        full_env["CLOUDML_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "cloudml", *map(str, args)],
        capture_output=True, text=True, input=input, env=full_env, timeout=timeout, cwd=cwd or REPO,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def cli_json(*args: str, home: Path, **kwargs) -> Any:
    result = run_cli(*args, "--output", "json", home=home, **kwargs)
    assert result.returncode == 0, f"cloudml {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@dataclass
class SeedModel:
    name: str
    path: Path  # the .h5 the example script saved, as in the original article
    instances: list[Any]
    _keras: Any = field(default=None, repr=False)

    def keras_model(self):
        if self._keras is None:
            import keras

            self._keras = keras.models.load_model(self.path, compile=False)
        return self._keras

    def reference(self, instances: list[Any] | None = None) -> list[np.ndarray]:
        """The in-process model's outputs, one array per instance."""
        model = self.keras_model()
        instances = self.instances if instances is None else instances
        # Sequences of different lengths cannot share a batch: run them one at a time.
        return [np.asarray(model(np.asarray([inst]), training=False))[0] for inst in instances]


def rows_close(rows, reference) -> bool:
    """Prediction rows equal the reference outputs (to float tolerance), row for row."""
    return len(rows) == len(reference) and all(np.allclose(np.asarray(r), np.asarray(e), atol=1e-5) for r, e in zip(rows, reference, strict=True))


def next_matching(lines, text: str, *, timeout: float) -> bool:
    """Read an endless line iterator (logs --follow) in a thread until a line contains `text`
    (or time runs out)."""
    import threading

    found = threading.Event()

    def read():
        for line in lines:
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    return found.wait(timeout)


def read_exports(stream, *, until: str) -> dict[str, str]:
    """The `export KEY=VALUE` lines an emulator prints on start, up to and including `until`."""
    exports = {}
    for line in stream:
        if line.strip().startswith("export "):
            key, _, value = line.strip().removeprefix("export ").partition("=")
            exports[key] = value
            if key == until:
                break
    return exports


def sagemaker_image(deployment: dict) -> str:
    """The container image the SageMaker model behind a cloudml deployment (its JSON) runs, read with boto3."""
    import boto3

    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=deployment["details"]["endpoint_config"])
    return sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])["PrimaryContainer"]["Image"]


def relabelled_savedmodel(model: Path, out: Path, tensorflow_version: str) -> Path:
    """`model` exported as a SavedModel folder whose metadata says `tensorflow_version` wrote it
    (how the image-selection tests get a model an older prebuilt image can load)."""
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    from cloudml.packaging import package_model

    packaged = package_model(model, out / "package", archive=False)
    target = out / "savedmodel"
    shutil.copytree(packaged.version_dir, target / "1")
    pb = target / "1" / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    for graph in saved.meta_graphs:
        graph.meta_info_def.tensorflow_version = tensorflow_version
    pb.write_bytes(saved.SerializeToString())
    return target


@pytest.fixture(scope="session")
def seed_models(tmp_path_factory) -> dict[str, SeedModel]:
    out = tmp_path_factory.mktemp("seed-models")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "examples" / script), "--out", str(out / f"{name}.h5"), "--epochs", "1", "--limit", "400"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=out,
        )
        for name, script in SEED_SCRIPTS.items()
    }
    models = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"examples/{SEED_SCRIPTS[name]} failed:\n{log}"
        sample = json.loads((out / f"{name}.sample.json").read_text())
        models[name] = SeedModel(name=name, path=out / f"{name}.h5", instances=sample["instances"])
    return models


@pytest.fixture(scope="session")
def other_cnn(seed_models, tmp_path_factory) -> tuple[Path, list]:
    """The seed CNN with different output-layer weights: a 'new version' of the same model."""
    import keras

    model = keras.models.load_model(seed_models["cnn"].path, compile=False)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 0.5, bias + 1.0])
    path = tmp_path_factory.mktemp("other") / "cnn-v2.h5"
    model.save(path)
    outputs = [np.asarray(model(np.asarray([x]), training=False))[0] for x in seed_models["cnn"].instances]
    return path, outputs


@pytest.fixture(scope="session")
def unservable_model(tmp_path_factory) -> Path:
    """A SavedModel that packages fine but fails its warm-up call, like a model with a broken op."""
    import tensorflow as tf

    class Broken(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
        def serve(self, pixels):
            tf.debugging.assert_equal(tf.reduce_sum(pixels) * 0.0, 1.0, message="this model cannot serve")
            return {"output_0": pixels[:, :10]}

    module = Broken()
    path = tmp_path_factory.mktemp("broken") / "broken_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="session")
def lgamma_model(tmp_path_factory) -> Path:
    """A SavedModel with an op tf2onnx has no ONNX mapping for (Lgamma), which TensorFlow runs."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.lgamma(tf.abs(x) + 1.0)}

    module = Model()
    path = tmp_path_factory.mktemp("lgamma") / "lgamma" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _cleanup_home(home: Path) -> None:
    """Stop every server a test left running in `home`."""
    if not (home / "state.db").exists():
        return
    from cloudml.providers.local import LocalDeployer

    deployer = LocalDeployer(home=home)
    for dep in deployer.list():
        deployer.delete(dep.name)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "cloudml-home"
    yield path
    _cleanup_home(path)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("session-home")
    yield path
    _cleanup_home(path)


@pytest.fixture(scope="session")
def deployed(seed_models, session_home) -> dict[str, dict[str, Any]]:
    """Each seed model deployed once through the CLI on the local provider (name: seed-<model>)."""
    result = {}
    for name, model in seed_models.items():
        out = cli_json("deploy", model.path, "--name", f"seed-{name}", home=session_home)
        assert out["deployment"]["status"] == "healthy"
        result[name] = out["deployment"]
    return result


@pytest.fixture(scope="session")
def azure_ml(azure_emulator_session):
    """A plain MLClient on the emulated Azure ML workspace (DefaultAzureCredential, the emulator as
    a custom cloud), built with the emulator's environment and leaving the process's as it was."""
    saved = dict(os.environ)
    os.environ.update(azure_emulator_session.env)  # the credential (managed identity) and the certificate
    try:
        client = azure_emulator_session.ml_client()
        client.workspaces.get(azure_emulator_session.workspace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return client


@pytest.fixture(scope="module")
def client():
    import httpx

    # trust_env=False: no proxy from the environment; these tests talk to 127.0.0.1 only.
    with httpx.Client(timeout=60, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def references(seed_models):
    """The in-process model's outputs for each seed's sample instances (computed once)."""
    return {name: model.reference() for name, model in seed_models.items()}


def endpoint(deployed, name: str) -> str:
    from urllib.parse import urlsplit

    url = deployed[name]["endpoint_url"]
    assert urlsplit(url).hostname == "127.0.0.1", f"local deployments must listen on loopback: {url}"
    return url


@pytest.fixture
def vertex(gcp_emulator):
    """The high-level aiplatform SDK, initialised the way a user points it at the emulator."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    aiplatform.init(project=gcp_emulator.project, location=gcp_emulator.location, credentials=AnonymousCredentials(),
                    api_endpoint=gcp_emulator.url, api_transport="rest")
    return aiplatform


@pytest.fixture
def ml(azure_ml):
    return azure_ml


@pytest.fixture
def blobs(azure_emulator, ml):
    """The workspace datastore's blob container in Azurite."""
    from azure.storage.blob import ContainerClient

    from cloudml.emulators.azure.azurite import ACCOUNT_KEY

    return ContainerClient(azure_emulator.storage_url, ml.datastores.get_default().container_name, credential=ACCOUNT_KEY)


# -- container registries and podman (tests/test_images.py, tests/test_runtime_image.py) ---------------

REGISTRY_BIN = "/usr/bin/docker-registry"
# How podman runs containers on this machine (../shared/contracts.md §5): runc, not crun, and
# explicit ulimits. Set both to "" where a normal Podman needs none of it. Exported, so the
# emulators the fixtures start run their containers the same way (cloudml/emulators/container.py).
os.environ.setdefault("CLOUDML_PODMAN_FLAGS", "--runtime /usr/sbin/runc")
os.environ.setdefault("CLOUDML_PODMAN_RUN_FLAGS", "--network host --ulimit nofile=1024:4096 --ulimit nproc=1024:4096")
# What `make test-assets` fetches for the runtime-image tests (tools/runtime_assets.py).
WHEELHOUSE = REPO / "build" / "wheelhouse"
TF_WHEELHOUSE = REPO / "build" / "wheelhouse-tf"
DEBS = REPO / "build" / "debs"


def require_wheelhouse(house: Path, backend: str, version: str, what: str = "wheelhouse") -> None:
    """Skip unless `house` was filled for `backend`'s runtime image at `version` (its stamp)."""
    from cloudml.images import runtime

    stamp = house / ".requirements"
    if not stamp.is_file() or stamp.read_text() != "\n".join(runtime.requirements(backend, version)) + "\n":
        pytest.skip(f"the {what} {house} is missing or stale (run `make test-assets`)")


def require_image_assets() -> None:
    """Skip unless the offline base's .debs and the ONNX image's wheelhouse are there."""
    from cloudml.images import runtime

    if not any(DEBS.glob("*.deb")):
        pytest.skip(f"no Debian .debs in {DEBS} for the offline python:3.11-slim stand-in (run `make test-assets` on Debian)")
    require_wheelhouse(WHEELHOUSE, "onnx", runtime.default_version("onnx"))


PODMAN_FLAGS = shlex.split(os.environ["CLOUDML_PODMAN_FLAGS"])
PODMAN_RUN_FLAGS = shlex.split(os.environ["CLOUDML_PODMAN_RUN_FLAGS"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(root: Path, auth: str = "") -> tuple[str, subprocess.Popen]:
    """A CNCF distribution registry on a free loopback port, storing under `root` (`auth`: its config's auth section)."""
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("the CNCF distribution registry is not installed (apt-get install docker-registry)")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = open(root / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"127.0.0.1:{port}", proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
