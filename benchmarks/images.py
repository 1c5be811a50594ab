"""Image benchmark: the daemonless runtime image against the image the old Dockerfile built.

    .venv/bin/python benchmarks/images.py [--skip-dockerfile] [--skip-containers] [--runs 3]
                                          [--model cnn.h5] [--wheel-cache build/bench-wheels] [--json out.json]
    .venv/bin/python benchmarks/images.py --print out.json     # the report of an earlier run again

In one run, offline except for one download of the TensorFlow wheels (cached in --wheel-cache):

1. A fresh CNCF registry (docker-registry) on a loopback port gets the offline base
   (cloudml.images.debian: Debian bookworm's python3.11, the stand-in for python:3.11-slim, from
   build/debs), then the ONNX runtime image (cloudml.images.runtime.runtime_image, wheels from
   build/wheelhouse, no index): first build and push, wall time and bytes pushed.
2. The re-deploy: the same call again (bytes pushed, time), and from-scratch rebuilds (base and
   image) into an empty registry on another port and, once the first registry is stopped, into
   an empty one on its port: whether the digest is the same (at another address it differs by
   design: the base's name, registry address included, is in the image's labels and tag key).
3. Sizes, compressed (the layers' blob sizes in the manifest) and uncompressed (the layers
   decompressed; and `podman image inspect` Size after a pull): the ONNX runtime image, the
   TensorFlow runtime image, and the image `cloudml package --container`'s Dockerfile builds for
   a TensorFlow-served package (FROM python:3.11-slim, pip install of its requirements.txt, COPY
   of the whole cloudml package), reproduced layer for layer with the same builder on the same
   base (--skip-dockerfile: neither TensorFlow image, nothing downloaded).
4. Cold start to the first prediction: `podman run` of the pushed ONNX image with the seed CNN's
   package mounted at /opt/ml/model, image not pulled (the pull is part of it) and already
   pulled, against `cloudml serve PACKAGE` on the host; --runs times each, alternating.

Then a table, the ratios and the two stated expectations (a re-deploy pushes 0 bytes; a rebuild
gives the same digest) as PASS/MISS, never asserted. Registries, containers, pulled images and
the temporary folder are removed at the end, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

from frame import run_benchmark
from procs import LOOPBACK, ProcessGroup, free_port, wait_for_prediction

from cloudml.images import debian, runtime, wheels
from cloudml.images.layers import Layer, layer_from_tree
from cloudml.images.oci import parse_manifest
from cloudml.images.registry import RegistryClient
from cloudml.progress import Progress

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
# How podman runs containers on this machine (see tests/conftest.py): runc and explicit ulimits.
PODMAN_FLAGS = shlex.split(os.environ.get("CLOUDML_PODMAN_FLAGS", "--runtime /usr/sbin/runc"))
PODMAN_RUN_FLAGS = shlex.split(os.environ.get("CLOUDML_PODMAN_RUN_FLAGS", "--network host --ulimit nofile=1024:4096 --ulimit nproc=1024:4096"))
TF_VERSION = "2.21.0"
FIRST_PREDICTION_TIMEOUT_S = 300
CLI_TIMEOUT_S = 900
# Where the Dockerfile's `pip install` puts packages in python:3.11-slim, and where it COPYs cloudml.
DOCKERFILE_SITE = "usr/local/lib/python3.11/site-packages"
DOCKERFILE_APP = "opt/cloudml/cloudml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUILD / "models" / "cnn.h5",
                        help=".h5/.keras model to package (default: %(default)s, trained by examples/train_cnn.py if missing)")
    parser.add_argument("--debs", type=Path, default=BUILD / "debs", help="Debian .debs of the offline base (default: %(default)s)")
    parser.add_argument("--wheelhouse", type=Path, default=BUILD / "wheelhouse", help="wheels of the ONNX runtime image (default: %(default)s)")
    parser.add_argument("--wheel-cache", type=Path, default=BUILD / "bench-wheels",
                        help="TensorFlow and the Dockerfile's wheels, downloaded once from PyPI (default: %(default)s)")
    parser.add_argument("--skip-dockerfile", action="store_true", help="no TensorFlow images (nothing downloaded): ONNX image only")
    parser.add_argument("--skip-containers", action="store_true", help="no podman runs (no cold start figures)")
    parser.add_argument("--runs", type=int, default=3, help="cold starts of each kind (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--print", type=Path, metavar="JSON", help="only print the report of an earlier run's --json file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not Path(REGISTRY_BIN).exists():
        parser.error("the CNCF distribution registry is not installed (apt-get install docker-registry)")
    if not args.skip_containers and not shutil.which("podman"):
        parser.error("podman is not installed: give --skip-containers")
    return args


class Timed(Progress):
    """Prints each builder step with the seconds it took, and keeps them for the report."""

    def __init__(self, label: str):
        self.label, self.steps = label, []

    @contextlib.contextmanager
    def step(self, message: str):
        start = time.perf_counter()
        yield self
        took = time.perf_counter() - start
        self.steps.append((message, took))
        print(f"  [{self.label}] {message}: {took:.1f} s", flush=True)

    def note(self, message: str) -> None:
        print(f"  [{self.label}] {message}", flush=True)


# --- the processes this run starts ----------------------------------------------------------

class Registry:
    """docker-registry on a free loopback port, storing under `root`."""

    def __init__(self, root: Path, port: int | None = None):
        self.port = port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {LOOPBACK}:{self.port}\n")
        self.log = root / "registry.log"
        with open(self.log, "wb") as log:
            self.group = ProcessGroup.start([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return
            except OSError:
                if not self.group.alive():
                    break
                time.sleep(0.05)
        self.group.stop()
        raise RuntimeError(f"the registry did not start: {self.log.read_text()[-2000:]}")

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"


def podman(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDML_")}
    env |= {"CLOUDML_HOME": str(cwd / "home"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "cloudml", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"cloudml {' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


# --- sizes ----------------------------------------------------------------------------------

def uncompressed_size(blob: Path) -> int:
    """Bytes of the tar a gzip'd layer unpacks to (streamed; what the layer's diff_id hashes)."""
    inflate, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    with open(blob, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(inflate.decompress(chunk))
    return total + len(inflate.flush())


class Sizes:
    """Compressed and uncompressed layer sizes of pushed images, each layer decompressed once."""

    def __init__(self, workdir: Path):
        self.workdir, self.known = workdir, {}

    def layer(self, digest: str, measure) -> int:
        if digest not in self.known:
            self.known[digest] = measure()
        return self.known[digest]

    def pulled(self, client: RegistryClient, repository: str, digest: str) -> int:
        path = client.pull_blob(repository, digest, self.workdir / digest.replace(":", "-"))
        try:
            return uncompressed_size(path)
        finally:
            path.unlink()

    def of_image(self, host: str, repository: str, reference: str) -> dict:
        client = RegistryClient(host, plain_http=True)
        data, media_type, _ = client.get_image_manifest(repository, reference)
        manifest = parse_manifest(data, media_type)
        layers = [{"digest": d.digest, "compressed": d.size,
                   "uncompressed": self.layer(d.digest, lambda d=d: self.pulled(client, repository, d.digest))}
                  for d in manifest.layers]
        return summed(layers)

    def of_layers(self, layers: list[Layer]) -> dict:
        return summed([{"digest": x.digest, "compressed": x.size, "uncompressed": self.layer(x.digest, lambda x=x: uncompressed_size(x.path))}
                       for x in layers])


def summed(layers: list[dict]) -> dict:
    return {"layers": layers, "compressed": sum(x["compressed"] for x in layers), "uncompressed": sum(x["uncompressed"] for x in layers)}


# --- one run --------------------------------------------------------------------------------

class Run:
    def __init__(self, args, workdir: Path):
        self.args, self.workdir = args, workdir
        self.registries: list[Registry] = []
        self.containers: list[str] = []
        self.images: list[str] = []
        self.servers: list[ProcessGroup] = []
        self.sizes = Sizes(workdir)
        self.report: dict = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()}}

    def run(self) -> None:
        model = self.seed_model()
        self.body = json.dumps({"instances": [json.loads(model.with_name(model.stem + ".sample.json").read_text())["instances"][0]]}).encode()
        first = self.phase_onnx_image()
        self.phase_redeploy(first)
        self.report["onnx_image"]["size"] = self.sizes.of_image(self.registry.host, "cloudml/runtime", first.digest)
        self.report["base_image"]["size"] = self.sizes.of_image(self.registry.host, "library/python", "3.11-slim")
        if self.args.skip_dockerfile:
            self.report["dockerfile"] = self.report["tensorflow_image"] = {"skipped": "--skip-dockerfile"}
        else:
            self.phase_tensorflow_images(model)
        if self.args.skip_containers:
            self.report["cold_start"] = {"skipped": "--skip-containers"}
        else:
            self.phase_cold_start(model, first)
        self.rebuild("elsewhere", "another port: the base's name differs")
        port = self.registry.port
        self.registry.group.stop()
        self.registries.remove(self.registry)
        self.rebuild("rebuilt", f"the first one's port {port}, its storage gone", port)
        self.report["load_average_at_end"] = os.getloadavg()

    def seed_model(self) -> Path:
        model = self.args.model
        if not model.is_file():
            print(f"training the seed CNN (examples/train_cnn.py --out {model}) ...", flush=True)
            model.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(REPO / "examples" / "train_cnn.py"), "--out", str(model)], check=True, timeout=CLI_TIMEOUT_S,
                           capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        return model

    def start_registry(self, name: str, port: int | None = None) -> Registry:
        registry = Registry(self.workdir / name, port)
        self.registries.append(registry)
        return registry

    def push_base(self, registry: Registry) -> tuple[str, float, int]:
        start = time.perf_counter()
        result = debian.python_base_image(f"{registry.host}/library/python:3.11-slim", cache=self.args.debs, plain_http=True, work_dir=self.workdir)
        return f"{registry.host}/library/python:3.11-slim", time.perf_counter() - start, result.bytes_uploaded

    def onnx_image(self, registry: Registry, base: str, label: str) -> tuple[runtime.RuntimeImage, dict]:
        start, progress = time.perf_counter(), Timed(label)
        image = runtime.runtime_image("onnx", target_repository=f"{registry.host}/cloudml/runtime", base=base, plain_http=True,
                                      find_links=[self.args.wheelhouse], no_index=True, work_dir=self.workdir, progress=progress)
        return image, describe(image, time.perf_counter() - start, progress)

    def phase_onnx_image(self) -> runtime.RuntimeImage:
        print("registry 1: pushing the offline base, then building and pushing the ONNX runtime image ...", flush=True)
        self.registry = self.start_registry("registry-1")
        self.base, base_s, base_bytes = self.push_base(self.registry)
        self.report["base_image"] = {"reference": self.base, "push_s": base_s, "bytes_pushed": base_bytes}
        image, first = self.onnx_image(self.registry, self.base, "onnx, first")
        self.report["onnx_image"] = {"reference": image.reference, "digest": image.digest, "tag": image.tag, "first": first}
        return image

    def phase_redeploy(self, first: runtime.RuntimeImage) -> None:
        print("the same call again (a re-deploy) ...", flush=True)
        again, figures = self.onnx_image(self.registry, self.base, "onnx, again")
        self.report["onnx_image"]["again"] = figures | {"digest": again.digest}

    def rebuild(self, key: str, what: str, port: int | None = None) -> None:
        """The base and the ONNX image from scratch into an empty registry (`port`: the first
        registry's, once it is stopped, so the base has the same name)."""
        print(f"an empty registry ({what}): the offline base and the ONNX runtime image from scratch ...", flush=True)
        registry = self.start_registry(f"registry-{key}", port)
        base, base_s, _ = self.push_base(registry)
        image, figures = self.onnx_image(registry, base, f"onnx, {key}")
        layers = [b["digest"] for b in figures["blobs"] if b["what"].startswith("layer")]
        self.report["onnx_image"][key] = figures | {"digest": image.digest, "tag": image.tag, "base": base, "base_push_s": base_s,
                                                     "layer_digests": layers}
        registry.group.stop()
        self.registries.remove(registry)

    def tensorflow_wheels(self, pins: list[str]) -> None:
        """TensorFlow's wheels for linux/amd64 in --wheel-cache: offline when they are all there, else from PyPI."""
        cache = self.args.wheel_cache
        start = time.perf_counter()
        try:
            wheels.resolve_wheels(pins, cache, find_links=[cache, self.args.wheelhouse], no_index=True)
            how = "all in the cache"
        except Exception as exc:  # noqa: BLE001 - anything missing: download
            print(f"  wheel cache {cache} lacks some ({str(exc)[:120]}...): downloading from PyPI", flush=True)
            wheels.resolve_wheels(pins, cache)
            how = "downloaded from PyPI"
        took = time.perf_counter() - start
        size = sum(p.stat().st_size for p in cache.glob("*.whl"))
        print(f"  TensorFlow wheels: {how} in {took:.1f} s ({size / 2**20:.0f} MiB in {cache})", flush=True)
        self.report["wheels"] = {"how": how, "s": took, "cache_bytes": size}

    def phase_tensorflow_images(self, model: Path) -> None:
        print("packaging the seed CNN for TensorFlow with --container (the old Dockerfile's context) ...", flush=True)
        out = self.workdir / "package-tf"
        cli("package", str(model.resolve()), "--runtime", "tensorflow", "--container", "--out", str(out), "--output", "json", cwd=self.workdir)
        context = out / "container"
        pins = [line.strip() for line in (context / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
        tf_pins = runtime.requirements("tensorflow", TF_VERSION)
        self.tensorflow_wheels(sorted(set(pins) | {p for p in tf_pins if "==" in p}))
        links = [self.args.wheel_cache, self.args.wheelhouse]

        print(f"the Dockerfile's layers: pip install {' '.join(pins)}; COPY cloudml/ ...", flush=True)
        blobs = self.workdir / "dockerfile-blobs"
        start = time.perf_counter()
        deps = wheels.dependency_layer(pins, blobs, prefix=DOCKERFILE_SITE, find_links=links, no_index=True)
        app = layer_from_tree(context / "cloudml", blobs, prefix=DOCKERFILE_APP, comment="COPY cloudml/")
        model_layer = layer_from_tree(context / "model", blobs, prefix="opt/ml/model", comment="COPY model/")
        layers_s = time.perf_counter() - start
        base = self.report["base_image"]["size"]
        runtime_part = self.sizes.of_layers([deps, app])
        self.report["dockerfile"] = {
            "requirements": pins, "layers_s": layers_s,
            "size": summed(base["layers"] + runtime_part["layers"]),
            "pip_layer": self.sizes.of_layers([deps]), "cloudml_layer": self.sizes.of_layers([app]),
            "model_layer": self.sizes.of_layers([model_layer]),
        }

        print(f"the TensorFlow runtime image (tensorflow-cpu=={TF_VERSION}) ...", flush=True)
        start, progress = time.perf_counter(), Timed("tensorflow")
        image = runtime.runtime_image("tensorflow", backend_version=TF_VERSION, target_repository=f"{self.registry.host}/cloudml/runtime",
                                      base=self.base, plain_http=True, find_links=links, no_index=True, work_dir=self.workdir, progress=progress)
        self.report["tensorflow_image"] = describe(image, time.perf_counter() - start, progress) | {
            "digest": image.digest, "tag": image.tag, "size": self.sizes.of_image(self.registry.host, "cloudml/runtime", image.digest)}

    # -- cold start ---------------------------------------------------------------------------

    def phase_cold_start(self, model: Path, image: runtime.RuntimeImage) -> None:
        print("packaging the seed CNN (cloudml package, default runtime) ...", flush=True)
        out = self.workdir / "package-onnx"
        record = json.loads(cli("package", str(model.resolve()), "--out", str(out), "--output", "json", cwd=self.workdir).stdout)
        folder = Path(record["folder"])
        if record["manifest"]["runtime"]["backend"] != "onnx":
            raise RuntimeError(f"the seed CNN packaged for {record['manifest']['runtime']['backend']!r}, not onnx")
        for path in [folder, *folder.rglob("*")]:  # as SageMaker unpacks model.tar.gz: readable by uid 10001
            path.chmod(0o755 if path.is_dir() else 0o644)

        self.images.append(image.pinned)
        podman("rmi", "--force", image.pinned, timeout=120)
        runs: dict[str, list[float]] = {"not_pulled": [], "pulled": [], "host": []}
        pulls: list[float] = []
        for number in range(1, self.args.runs + 1):
            print(f"cold start, run {number} of {self.args.runs}:", flush=True)
            podman("rmi", "--force", image.pinned, timeout=120)
            runs["not_pulled"].append(self.container_start(image.pinned, folder, "not pulled"))
            runs["pulled"].append(self.container_start(image.pinned, folder, "pulled"))
            runs["host"].append(self.host_start(folder))
            podman("rmi", "--force", image.pinned, timeout=120)
            start = time.perf_counter()
            podman("pull", "--tls-verify=false", "-q", image.pinned, timeout=600, check=True)
            pulls.append(time.perf_counter() - start)
        inspect = json.loads(podman("image", "inspect", image.pinned, check=True).stdout)[0]
        self.report["onnx_image"]["podman_size"] = inspect["Size"]
        podman("rmi", "--force", image.pinned, timeout=120)
        self.report["cold_start"] = {"runs": runs, "podman_pull_s": pulls,
                                     "median": {k: statistics.median(v) for k, v in (runs | {"podman_pull": pulls}).items()}}

    def container_start(self, reference: str, folder: Path, what: str) -> float:
        port, name = free_port(), f"cloudml-imagebench-{os.getpid()}-{len(self.containers)}"
        self.containers.append(name)
        argv = ["podman", *PODMAN_FLAGS, "run", "--rm", "--name", name, *PODMAN_RUN_FLAGS, "--tls-verify=false",
                "-v", f"{folder}:/opt/ml/model:ro", "-e", f"SAGEMAKER_BIND_TO_PORT={port}", reference, "serve"]
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            start = time.perf_counter()
            group = ProcessGroup.start(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_prediction(port, self.body, timeout=FIRST_PREDICTION_TIMEOUT_S, alive=group.alive, accept=one_prediction)
            took = time.perf_counter() - start
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from None
        finally:
            podman("stop", "-t", "3", name, timeout=60)
            group.stop()
        print(f"  podman run ({what}) -> first 200: {took:.2f} s", flush=True)
        return took

    def host_start(self, folder: Path) -> float:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDML_")} | {"TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.workdir / "host-serve.log", "ab") as out:
            start = time.perf_counter()
            group = ProcessGroup.start([sys.executable, "-m", "cloudml", "serve", str(folder), "--host", LOOPBACK, "--port", str(port)],
                                       stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.servers.append(group)
        try:
            wait_for_prediction(port, self.body, timeout=FIRST_PREDICTION_TIMEOUT_S, alive=group.alive, accept=one_prediction)
            took = time.perf_counter() - start
        finally:
            group.stop()
            self.servers.remove(group)
        print(f"  cloudml serve PACKAGE (host) -> first 200: {took:.2f} s", flush=True)
        return took

    def close(self) -> None:
        for name in self.containers:
            podman("rm", "--force", name, timeout=60)
        for group in self.servers:
            group.stop()
        for reference in self.images:
            podman("rmi", "--force", reference, timeout=120)
        for registry in self.registries:
            registry.group.stop()


def one_prediction(payload: bytes) -> bool:
    return len(json.loads(payload)["predictions"]) == 1


def describe(image: runtime.RuntimeImage, took: float, progress: Timed) -> dict:
    blobs = image.result.blobs if image.result else ()
    return {"s": took, "steps_s": progress.steps, "built": image.built, "bytes_pushed": image.bytes_uploaded,
            "bytes_mounted": sum(b.size for b in blobs if b.action == "mounted"),
            "bytes_skipped": sum(b.size for b in blobs if b.action == "skipped"),
            "blobs": [{"what": b.what[:60], "size": b.size, "action": b.action, "digest": b.digest} for b in blobs]}


def machine_info() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    podman_version = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip() if shutil.which("podman") else "-"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "podman": podman_version, "cloudml": runtime.__version__,
            "load_average_at_start": os.getloadavg()}


# --- the report -----------------------------------------------------------------------------

def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"\nmachine: {m['nproc']} CPUs ({m['cpu_model']}), {m['platform']}, python {m['python']}, {m['podman']}, cloudml {m['cloudml']}")
    print("load average (1/5/15 min) at start: {:.2f} {:.2f} {:.2f}, at end: {:.2f} {:.2f} {:.2f}".format(
        *m["load_average_at_start"], *r.get("load_average_at_end", (0, 0, 0))))
    onnx, base = r["onnx_image"], r["base_image"]
    print(f"\nthe ONNX runtime image: {onnx['tag']}\n")
    print(f"{'build and push':<62} | {'wall s':>7} | {'built':>5} | {'MiB pushed':>10} | {'MiB mounted/skipped':>19}")
    print(f"{'-' * 62}-|---------|-------|------------|--------------------")
    rows = [("offline base (python:3.11-slim stand-in), registry 1", {"s": base["push_s"], "built": True, "bytes_pushed": base["bytes_pushed"]}),
            ("ONNX runtime image, first build and push", onnx["first"]),
            ("the same call again (re-deploy)", onnx["again"]),
            ("from scratch, empty registry at the same address (*)", onnx["rebuilt"]),
            ("from scratch, empty registry at another address (*)", onnx["elsewhere"])]
    if "s" in r.get("tensorflow_image", {}):
        rows.append((f"TensorFlow runtime image (tensorflow-cpu {TF_VERSION}), first", r["tensorflow_image"]))
    for label, row in rows:
        other = row.get("bytes_mounted", 0) + row.get("bytes_skipped", 0)
        print(f"{label:<62} | {row['s']:7.2f} | {'yes' if row['built'] else 'no':>5} | {mib(row['bytes_pushed']):>10} | {mib(other):>19}")
    print(f"  (*) after pushing the base there: {onnx['rebuilt']['base_push_s']:.1f} s and {onnx['elsewhere']['base_push_s']:.1f} s more; "
          "the base layer is then mounted, not sent")
    first_layers = [b["digest"] for b in onnx["first"]["blobs"] if b["what"].startswith("layer")]
    for key, label in (("rebuilt", "same address"), ("elsewhere", "another address")):
        other = onnx[key]
        print(f"  image digest, {label}: {other['digest'][:19]} ({'the same' if other['digest'] == onnx['digest'] else 'different'}); "
              f"tag {'the same' if other['tag'] == onnx['tag'] else other['tag']}; "
              f"layer digests {'the same' if other['layer_digests'] == first_layers else 'different'}")
    if "wheels" in r:
        print(f"  TensorFlow wheels: {r['wheels']['how']} in {r['wheels']['s']:.1f} s; "
              f"the Dockerfile's layers took {r['dockerfile']['layers_s']:.1f} s to build")

    print(f"\n{'image size (layers)':<62} | {'compressed MiB':>14} | {'uncompressed MiB':>16} | {'layers':>6}")
    print(f"{'-' * 62}-|----------------|------------------|-------")
    sizes = [("offline base alone (Debian bookworm python3.11)", base["size"]), ("cloudml ONNX runtime image", onnx["size"])]
    docker = r.get("dockerfile", {})
    if "size" in docker:
        sizes += [(f"cloudml TensorFlow runtime image ({TF_VERSION})", r["tensorflow_image"]["size"]),
                  ("old Dockerfile image (TF-served package), model excluded", docker["size"]),
                  ("  of which pip install -r requirements.txt", docker["pip_layer"]),
                  ("  of which COPY cloudml/ (the whole package)", docker["cloudml_layer"]),
                  ("  (COPY model/, the seed CNN: not counted)", docker["model_layer"])]
    for label, size in sizes:
        print(f"{label:<62} | {mib(size['compressed']):>14} | {mib(size['uncompressed']):>16} | {len(size['layers']):>6}")
    if "podman_size" in onnx:
        print(f"  podman image inspect Size of the pulled ONNX image: {mib(onnx['podman_size'])} MiB")
    if "size" in docker:
        print("  the Dockerfile image here is a lower bound: its pip install also writes bytecode and bin/ scripts, and its")
        print("  useradd layer (a few KiB) is left out; same base, same builder, same compression (gzip level 6)")

    print("\nratios:")
    if "size" in docker:
        for what in ("compressed", "uncompressed"):
            o, t, d = onnx["size"][what], r["tensorflow_image"]["size"][what], docker["size"][what]
            print(f"  {what:>12}: ONNX image / Dockerfile image {o / d:.2f}x ({1 - o / d:.0%} smaller); "
                  f"TensorFlow runtime image / Dockerfile image {t / d:.2f}x")
            ob, db = o - base["size"][what], d - base["size"][what]
            print(f"  {'':>12}  above the base: ONNX {mib(ob)} MiB against the Dockerfile's {mib(db)} MiB, {ob / db:.2f}x")
    else:
        print(f"  Dockerfile image: {docker.get('skipped', '-')}")
    cold = r.get("cold_start", {})
    if "median" in cold:
        med = cold["median"]
        print(f"\n{'cold start -> first 200 on POST /invocations':<62} | {'median s':>8} | runs")
        print(f"{'-' * 62}-|----------|-----")
        for label, key in (("podman run, image not pulled (pull included)", "not_pulled"), ("podman run, image already pulled", "pulled"),
                           ("cloudml serve PACKAGE on the host", "host"), ("(podman pull alone)", "podman_pull")):
            values = cold["podman_pull_s"] if key == "podman_pull" else cold["runs"][key]
            print(f"{label:<62} | {med[key]:8.2f} | {len(values)}  ({', '.join(f'{v:.2f}' for v in values)})")
        print(f"  container (pulled) / host process: {med['pulled'] / med['host']:.2f}x; not pulled / host process: {med['not_pulled'] / med['host']:.2f}x")
    else:
        print(f"\ncold start: {cold.get('skipped', '-')}")

    print("\nexpectations (measured, not asserted):")
    again, rebuilt = onnx["again"], onnx["rebuilt"]
    ok = again["bytes_pushed"] == 0 and not again["built"]
    print(f"  re-deploy pushes 0 bytes                         {again['bytes_pushed']:,} bytes, built: {again['built']}  {'PASS' if ok else 'MISS'}")
    same = rebuilt["digest"] == onnx["digest"] and again["digest"] == onnx["digest"]
    print(f"  rebuild from scratch gives the same digest       {onnx['digest'][:19]} vs {rebuilt['digest'][:19]}  {'PASS' if same else 'MISS'}")
    if onnx["elsewhere"]["digest"] != onnx["digest"]:
        print("  (at another address the image differs by design: the base's name, registry address included, is in its")
        print("  org.opencontainers.image.base.name label and in its tag's key)")


def main() -> int:
    args = parse_args()
    if args.print:
        print_report(json.loads(args.print.read_text()))
        return 0
    return run_benchmark(lambda workdir: Run(args, workdir), prefix="cloudml-imagebench-", json_path=args.json, print_report=print_report)


if __name__ == "__main__":
    sys.exit(main())
