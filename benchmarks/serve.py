"""Serving benchmark: cloudml against its own ceilings and `mlflow models serve`, in one run.

    .venv/bin/python benchmarks/serve.py [--model cnn.h5] [--duration 10] [--concurrency 32]
                                         [--skip-mlflow | --mlflow-venv PATH] [--json out.json]

On the same model (the seed MNIST CNN, trained by examples/train_cnn.py unless --model is given)
and the same load (N closed-loop clients over kept-alive connections, one instance per request,
--warmup s unmeasured then --duration s measured; wrk when on PATH, else benchmarks/loadgen.py):

1. cloudml on each runtime backend, batching on (defaults otherwise): `cloudml deploy MODEL
   --provider local --runtime onnx` as bench-cnn-onnx and `--runtime tensorflow` as bench-cnn-tf,
   each timed to the first 200 (cold start, packaging included); then 1 client on each.
2. --rounds paired rounds at --concurrency clients: ONNX-served, the HTTP + JSON ceiling
   (benchmarks/noop_server.py: same server, no-op model, on the package), TensorFlow-served (the
   two backends swap places every other round), reading each server's GET /metrics before and
   after for the mean batch size it formed. A VM's speed drifts by 10% or more within minutes,
   so the three are measured side by side, several times, and the table shows the round with the
   median ONNX / no-op ratio.
3. RSS (VmRSS, VmHWM) of each deployment's serving process, after that load.
4. Serving-process cold start: `cloudml serve PACKAGE` on each deployed package (no packaging),
   process start -> first 200, alternately, three runs each; and the references
   `python -c "import tensorflow"`, the same plus `tf.saved_model.load` of the package, and
   `import onnxruntime` plus an InferenceSession on its model.onnx, three runs each.
5. The model ceiling of each backend: benchmarks/raw_signature.py --backend B at batch 1 and at
   the mean batch size that backend's server formed in 2.
6. cloudml, batching off: a third deployment, bench-cnn-nobatch, --env CLOUDML_BATCHING=0, and a
   fourth with CLOUDML_WORKERS=2, default runtime (deployed once the others are deleted, so one
   model server runs at a time).
7. mlflow: installed into its own venv (benchmarks/mlflow_baseline.py), the model saved in MLflow
   format, `mlflow models serve` timed to its first 200 and driven like the others.
   If it cannot be installed or started: "mlflow skipped: <reason>", and the rest still runs.

Then one table, the ratios, cold start and the issue's targets (PASS/MISS, never asserted).
Every phase is bounded in time, all traffic goes to 127.0.0.1, and every process and deployment
it started is stopped (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import loadgen
import mlflow_baseline
from deployments import CLI, CLI_TIMEOUT_S, tf_env
from drive import drive, use_wrk
from frame import run_benchmark
from procs import ProcessGroup, free_port, memory_kib, wait_for_prediction, wait_for_serving_pids
from report import print_report, targets

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BACKENDS = ("onnx", "tensorflow")
BY_BACKEND = {"onnx": "bench-cnn-onnx", "tensorflow": "bench-cnn-tf"}
UNBATCHED, TWO_PROCESSES = "bench-cnn-nobatch", "bench-cnn-2proc"
TRAIN_TIMEOUT_S = 900
NOOP_START_TIMEOUT_S = 60
RAW_SECONDS_PER_BATCH = 3.0
BASELINE_RUNS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=".h5/.keras model to deploy (default: train the seed CNN)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients in the main scenarios (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="paired rounds of both backends and the no-op ceiling at --concurrency clients (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("--mlflow-request-timeout", type=float, default=30.0,
                        help="seconds per request to mlflow, whose requests queue for long (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="cap per scenario, python generator (default: %(default)s)")
    parser.add_argument("--generator", choices=("auto", "python", "wrk"), default="auto",
                        help="wrk when on PATH (auto), or always benchmarks/loadgen.py (default: %(default)s)")
    parser.add_argument("--skip-mlflow", action="store_true", help="do not install or measure mlflow")
    parser.add_argument("--mlflow-venv", type=Path, default=mlflow_baseline.DEFAULT_VENV,
                        help="venv for mlflow, created if needed and reused (default: %(default)s)")
    parser.add_argument("--mlflow-workers", type=int, default=1, help="mlflow models serve --workers (default: mlflow's, %(default)s)")
    parser.add_argument("--mlflow-install-timeout", type=float, default=mlflow_baseline.INSTALL_TIMEOUT_S,
                        help="seconds for creating the mlflow venv (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if min(args.concurrency, args.rounds) < 1 or args.duration <= 0 or args.warmup < 0 or args.request_timeout <= 0:
        parser.error("--concurrency, --rounds, --duration and --request-timeout must be positive, --warmup not negative")
    if args.generator == "wrk" and not loadgen.wrk_available():
        parser.error("--generator wrk: wrk is not on PATH")
    return args


# --- the machine and the model ---------------------------------------------------------------

def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "cloudml": metadata.version("cloudml"),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),  # other work on the machine skews everything
    }


def train_model(workdir: Path) -> tuple[Path, float]:
    out = workdir / "cnn.h5"
    print(f"training the seed CNN (examples/train_cnn.py --out {out}) ...", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "examples" / "train_cnn.py"), "--out", str(out)],
                            cwd=workdir, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, env=tf_env())
    if result.returncode != 0:
        raise RuntimeError(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return out, time.perf_counter() - start


def one_instance(model: Path) -> list:
    """The first instance of the model's sample request, else 784 fixed pseudo-random pixels."""
    sample = model.with_name(model.stem + ".sample.json")
    if sample.is_file():
        return json.loads(sample.read_text())["instances"][0]
    rng = random.Random(0)
    return [round(rng.random(), 4) for _ in range(784)]


# --- references measured in-process ----------------------------------------------------------

def time_python(code: str, runs: int = BASELINE_RUNS) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=CLI_TIMEOUT_S, env=tf_env())
        times.append(time.perf_counter() - start)
    return times


def raw_signature(version_dir: Path, backend: str, instance_file: Path, batch_sizes: list[int]) -> dict:
    result = subprocess.run(
        [sys.executable, str(HERE / "raw_signature.py"), str(version_dir), "--backend", backend, "--instance", str(instance_file),
         "--batch-sizes", ",".join(map(str, batch_sizes)), "--seconds", str(RAW_SECONDS_PER_BATCH)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=tf_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"raw_signature.py failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the phases ------------------------------------------------------------------------------

@dataclass
class NoopServer:
    group: ProcessGroup
    port: int


class Run:
    """One benchmark run. Fills `report` as it goes; `close` stops whatever is still running."""

    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.cli = CLI(home=workdir / "home", workdir=workdir)
        self.groups: list[ProcessGroup] = []
        self.report: dict = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()}}
        self.report["settings"]["concurrency"] = args.concurrency
        python_generator = "benchmarks/loadgen.py (processes x threads, blocking raw sockets, closed loop)"
        self.report["generator"] = ("wrk 4.x (-t min(CPUs, clients) -c clients, Lua script for the POST body)"
                                    if use_wrk(args.generator) else python_generator)

    def run(self) -> None:
        args, report = self.args, self.report
        model = args.model
        if model is None:
            model, report["training_s"] = train_model(self.workdir)
        self.body = json.dumps({"instances": [one_instance(model)]}).encode()
        self.instance_file = self.workdir / "instance.json"
        self.instance_file.write_bytes(self.body)

        deployed = {backend: self.phase_deploy(model, backend) for backend in BACKENDS}
        self.phase_one_client(deployed)
        self.phase_paired_rounds(deployed)
        self.phase_memory(deployed)
        self.phase_serve_cold_start(deployed)
        self.phase_references(deployed)
        self.phase_raw(deployed)
        for backend in BACKENDS:
            self.cli.delete(BY_BACKEND[backend])  # one model server at a time from here on
        self.phase_cloudml_no_batching(model)
        self.cli.delete(UNBATCHED)
        self.phase_cloudml_two_processes(model)
        self.cli.delete(TWO_PROCESSES)
        if args.skip_mlflow:
            report["mlflow"] = {"skipped": "--skip-mlflow"}
            print("mlflow skipped: --skip-mlflow", flush=True)
        else:
            self.phase_mlflow(model)
        report["load_average_at_end"] = os.getloadavg()

    def phase_deploy(self, model: Path, backend: str):
        name = BY_BACKEND[backend]
        print(f"deploying {model.name} as {name} with --runtime {backend} (CLOUDML_HOME={self.cli.home}) ...", flush=True)
        deployed = self.cli.deploy(model, name, self.body, runtime=backend)
        if deployed.runtime != backend:
            raise RuntimeError(f"{name} is served by {deployed.runtime!r}, not {backend!r}: {deployed.record['details']}")
        self.report.setdefault("deployments", {})[backend] = deployed.record
        self.report.setdefault("cold_start", {}).setdefault("deploy", {})[backend] = {
            "deploy_command_s": deployed.deploy_command_s,
            "deploy_to_first_prediction_s": deployed.deploy_to_first_prediction_s,
            "server_phases_s": deployed.server_phases_s,
        }
        return deployed

    def phase_one_client(self, deployed: dict) -> None:
        served = self.report.setdefault("served", {})
        if self.args.concurrency > 1:
            for backend in BACKENDS:
                served[f"{backend}_1"] = drive(f"cloudml, {backend}", deployed[backend].port, self.body, clients=1,
                                               server_pids=[deployed[backend].pid], args=self.args)

    def phase_paired_rounds(self, deployed: dict) -> None:
        """Both backends and the HTTP + JSON ceiling, side by side, --rounds times (the no-op
        server in the middle, the backends swapping ends); the table keeps the round with the
        median ONNX / no-op ratio, the report all of them."""
        noop = self.start_noop(deployed["onnx"].package)
        rounds = []
        try:
            for number in range(1, self.args.rounds + 1):
                print(f"round {number} of {self.args.rounds}:", flush=True)
                first, last = BACKENDS if number % 2 else BACKENDS[::-1]
                row: dict = {}
                row[first] = self._drive_backend(deployed[first])
                row["noop"] = drive("no-op model", noop.port, self.body, clients=self.args.concurrency,
                                    server_pids=[noop.group.pid], args=self.args)
                row[last] = self._drive_backend(deployed[last])
                ceiling = row["noop"]["samples_per_s"]
                row["ratio"] = {b: row[b]["samples_per_s"] / ceiling if ceiling else 0.0 for b in BACKENDS}
                rounds.append(row)
        finally:
            noop.group.stop()
            self.groups.remove(noop.group)
        self.report["paired_rounds"] = rounds
        middle = sorted(rounds, key=lambda r: r["ratio"]["onnx"])[(len(rounds) - 1) // 2]
        for key in (*BACKENDS, "noop"):
            self.report["served"][key] = middle[key]

    def _drive_backend(self, deployment) -> dict:
        return drive(f"cloudml, {deployment.runtime}", deployment.port, self.body, clients=self.args.concurrency,
                     server_pids=[deployment.pid], args=self.args)

    def phase_memory(self, deployed: dict) -> None:
        """RSS of each serving process, right after the load (the model warm, the batches formed)."""
        memory = self.report.setdefault("memory", {})
        for backend in BACKENDS:
            pids = wait_for_serving_pids(deployed[backend].port, 1, timeout=30)
            memory[backend] = {str(pid): memory_kib(pid) for pid in sorted(pids)}

    def phase_serve_cold_start(self, deployed: dict) -> None:
        print("timing `cloudml serve PACKAGE` start -> first 200 for each backend ...", flush=True)
        cold = self.report["cold_start"].setdefault("serve_package", {b: {"start_to_first_prediction_s": []} for b in BACKENDS})
        for run in range(BASELINE_RUNS):
            for backend in BACKENDS if run % 2 == 0 else BACKENDS[::-1]:
                seconds, phases = self.cli.serve(deployed[backend].package, self.body, self.workdir / f"serve-{backend}.log")
                cold[backend]["start_to_first_prediction_s"].append(seconds)
                cold[backend]["server_phases_s"] = phases  # the last run's

    def phase_references(self, deployed: dict) -> None:
        from cloudml.contract import Manifest

        print("timing python -c 'import tensorflow', '... tf.saved_model.load(...)', 'import onnxruntime; InferenceSession(...)' ...", flush=True)
        cold = self.report["cold_start"]
        cold["tensorflow_import_s"] = time_python("import tensorflow")
        version_dir = deployed["tensorflow"].version_dir
        cold["tensorflow_import_and_load_s"] = time_python(f"import tensorflow as tf; tf.saved_model.load({str(version_dir)!r})")
        graph = Manifest.read(deployed["onnx"].package).runtime.onnx
        onnx_file = deployed["onnx"].version_dir / graph.file
        cold["onnxruntime_import_and_load_s"] = time_python(f"import onnxruntime as ort; ort.InferenceSession({str(onnx_file)!r})")

    def start_noop(self, package: Path) -> NoopServer:
        port = free_port()
        print(f"starting benchmarks/noop_server.py on port {port} ...", flush=True)
        env = {k: v for k, v in tf_env().items() if not k.startswith("CLOUDML_")}  # batching on, defaults
        with open(self.workdir / "noop.log", "wb") as log:
            group = ProcessGroup.start([sys.executable, str(HERE / "noop_server.py"), str(package), "--port", str(port)],
                                       stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.groups.append(group)
        try:
            wait_for_prediction(port, self.body, timeout=NOOP_START_TIMEOUT_S, alive=group.alive,
                                accept=lambda payload: len(json.loads(payload)["predictions"]) == 1)
        except BaseException:
            group.stop()
            self.groups.remove(group)
            raise
        return NoopServer(group, port)

    def phase_raw(self, deployed: dict) -> None:
        self.report["raw"] = {}
        for backend in BACKENDS:
            mean = self.report["served"][backend].get("mean_batch_size") or 1.0
            formed = max(1, round(mean))
            sizes = sorted({1, formed})
            print(f"measuring the {backend} backend in-process at batch {', '.join(map(str, sizes))} "
                  f"(mean batch its server formed at {self.args.concurrency} clients: {mean:.2f}) ...", flush=True)
            raw = raw_signature(deployed[backend].version_dir, backend, self.instance_file, sizes)
            raw["model_ceiling"] = next(b for b in raw["batches"] if b["batch_size"] == formed)
            self.report["raw"][backend] = raw
            self.report["machine"]["tensorflow" if backend == "tensorflow" else "onnxruntime"] = raw["backend_version"]

    def phase_cloudml_no_batching(self, model: Path) -> None:
        print(f"deploying {model.name} as {UNBATCHED} with CLOUDML_BATCHING=0 ...", flush=True)
        deployed = self.cli.deploy(model, UNBATCHED, self.body, env={"CLOUDML_BATCHING": "0"})
        self.report["cold_start"]["no_batching_deploy_to_first_prediction_s"] = deployed.deploy_to_first_prediction_s
        self.report["served"]["cloudml_no_batching"] = row = drive(
            "cloudml, batching off", deployed.port, self.body, clients=self.args.concurrency,
            server_pids=[deployed.pid], args=self.args)
        row["runtime"] = deployed.runtime

    def phase_cloudml_two_processes(self, model: Path) -> None:
        """The scaling knob: two serving processes on one port (not the 2-core default)."""
        print(f"deploying {model.name} as {TWO_PROCESSES} with CLOUDML_WORKERS=2 ...", flush=True)
        deployed = self.cli.deploy(model, TWO_PROCESSES, self.body, env={"CLOUDML_WORKERS": "2"})
        pids = wait_for_serving_pids(deployed.port, 2, timeout=90)
        self.report["served"]["cloudml_two_processes"] = row = drive(
            "cloudml, batching, 2 processes", deployed.port, self.body, clients=self.args.concurrency,
            server_pids=sorted(pids), args=self.args)
        row["runtime"] = deployed.runtime
        self.report.setdefault("memory", {})["two_processes"] = {str(pid): memory_kib(pid) for pid in sorted(pids)}

    def phase_mlflow(self, model: Path) -> None:
        info: dict = {}
        self.report["mlflow"] = info
        server = None
        try:
            info["version"] = mlflow_baseline.ensure_venv(self.args.mlflow_venv, timeout=self.args.mlflow_install_timeout,
                                                          log=lambda line: print(line, flush=True))
            print(f"mlflow {info['version']}: saving the model with mlflow.tensorflow.save_model ...", flush=True)
            model_dir = self.workdir / "mlflow-model"
            mlflow_baseline.save_model(self.args.mlflow_venv, model, model_dir, self.instance_file)
            port = free_port()
            server = mlflow_baseline.MlflowServer(self.args.mlflow_venv, model_dir, port, self.workdir / "mlflow.log",
                                                  workers=self.args.mlflow_workers)
            print(f"starting mlflow models serve on port {port} ...", flush=True)
            info["start_to_first_prediction_s"] = server.start(self.body)
            self.groups.append(server.group)
            info["processes"] = server.group.members()
            info["served"] = drive("mlflow models serve", port, self.body, clients=self.args.concurrency,
                                   server_pids=info["processes"], args=self.args,
                                   request_timeout=self.args.mlflow_request_timeout, cloudml_metrics=False)
        except (mlflow_baseline.MlflowUnavailable, OSError, subprocess.SubprocessError, RuntimeError) as exc:
            info["skipped"] = str(exc) if isinstance(exc, mlflow_baseline.MlflowUnavailable) else f"{type(exc).__name__}: {exc}"
            print(f"mlflow skipped: {info['skipped']}", flush=True)
        finally:
            if server and server.group:
                server.stop()
                if server.group in self.groups:
                    self.groups.remove(server.group)

    def close(self) -> None:
        for group in list(self.groups):
            print(f"cleanup: stopping process group {group.pid}", flush=True)
            group.stop()
        self.cli.delete_all()


def main() -> int:
    args = parse_args()

    def add_targets(report: dict) -> None:
        report["targets"] = targets(report)

    return run_benchmark(lambda workdir: Run(args, workdir), prefix="cloudml-bench-", json_path=args.json,
                         print_report=print_report, finish=add_targets)

if __name__ == "__main__":
    sys.exit(main())
