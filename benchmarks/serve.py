"""End-to-end serving benchmark of the local provider, through the real CLI.

    .venv/bin/python benchmarks/serve.py [--model cnn.h5] [--duration 10] [--concurrency 32] [--json out.json]

1. Trains the seed MNIST CNN (examples/train_cnn.py) unless --model is given.
2. `cloudml deploy MODEL --name bench-cnn --output json` into a private, temporary
   CLOUDML_HOME, and times deploy -> first 200 from POST /invocations (cold start), next to
   `python -c "import tensorflow as tf; tf.saved_model.load(VERSION_DIR)"` on the package.
3. Measures the SavedModel signature in-process (benchmarks/raw_signature.py, a subprocess) at
   batch 1, 32 and 128: what the server could do if HTTP and JSON cost nothing.
4. Drives POST /invocations, one instance per request, with 1 and --concurrency closed-loop
   clients, over kept-alive and over fresh connections (benchmarks/loadgen.py; wrk when on PATH).
5. Prints one table and the ratios, and always deletes the deployment and the temporary home.

All traffic goes to 127.0.0.1; every request has a timeout and every phase a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import loadgen

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENT = "bench-cnn"
LOOPBACK = "127.0.0.1"
TRAIN_TIMEOUT_S = 900
CLI_TIMEOUT_S = 300  # above the local provider's 180 s startup timeout
FIRST_PREDICTION_TIMEOUT_S = 60
RAW_SECONDS_PER_BATCH = 3.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=".h5/.keras/SavedModel to deploy (default: train the seed CNN)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients in the concurrent scenarios (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="cap per scenario (default: %(default)s)")
    parser.add_argument("--generator", choices=("auto", "python", "wrk"), default="auto",
                        help="keep-alive load generator: wrk when on PATH (auto), or always python (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0 or args.request_timeout <= 0:
        parser.error("--concurrency, --duration and --request-timeout must be positive, --warmup not negative")
    if args.generator == "wrk" and not loadgen.wrk_available():
        parser.error("--generator wrk: wrk is not on PATH")
    return args


# --- the machine -----------------------------------------------------------------------------

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


class ProcessCPU:
    """CPU a process (all its threads) uses between two monotonic instants, from /proc."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None

    def _read(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def watch(self, start: float, end: float) -> None:
        def sample():
            try:
                time.sleep(max(0.0, start - time.monotonic()))
                before = self._read()
                time.sleep(max(0.0, end - time.monotonic()))
                self.seconds = self._read() - before
            except (OSError, IndexError, ValueError):
                self.seconds = None  # the server is gone; the errors column will say so
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def result(self) -> float | None:
        if self._thread:
            self._thread.join(5)
        return self.seconds


# --- the model -------------------------------------------------------------------------------

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


def tf_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# --- the CLI ---------------------------------------------------------------------------------

@dataclass
class CLI:
    """`cloudml` with a private home. It runs in `workdir`, so no ./cloudml.yaml and no
    CLOUDML_* variable of the caller's can redirect it to another provider or home."""

    home: Path
    workdir: Path

    def argv(self) -> list[str]:
        script = Path(sys.executable).with_name("cloudml")
        return [str(script)] if script.is_file() else [sys.executable, "-m", "cloudml"]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in tf_env().items() if not k.startswith("CLOUDML_")}
        return {**env, "CLOUDML_HOME": str(self.home)}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv() + list(args), cwd=self.workdir, env=self.env(),
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def deploy(cli: CLI, model: Path) -> dict:
    result = cli.run("deploy", str(model.resolve()), "--name", DEPLOYMENT, "--provider", "local",
                     "-o", f"host={LOOPBACK}", "--output", "json")
    if result.returncode != 0:
        raise RuntimeError(f"cloudml deploy exited {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}")
    deployment = json.loads(result.stdout)["deployment"]
    host = urlsplit(deployment["endpoint_url"]).hostname
    if host != LOOPBACK:
        raise RuntimeError(f"endpoint {deployment['endpoint_url']} is not on {LOOPBACK}; refusing to send traffic")
    return deployment


def delete(cli: CLI, deployment: dict | None) -> None:
    """Delete through the CLI; if its server still runs anyway, stop it ourselves."""
    try:
        result = cli.run("delete", DEPLOYMENT, "--provider", "local", "--output", "json")
        print(f"cleanup: cloudml delete {DEPLOYMENT} -> exit {result.returncode} {' '.join(result.stdout.split())}")
    except subprocess.TimeoutExpired:
        print(f"cleanup: cloudml delete {DEPLOYMENT} timed out")
    if deployment:
        stop_leftover_server(int(deployment["details"]["pid"]), cli.home)


def stop_leftover_server(pid: int, home: Path) -> None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone, as it should be
    if str(home).encode() not in cmdline:
        return  # the pid was reused by someone else's process: not ours to stop
    print(f"cleanup: server pid {pid} survived the delete; stopping it")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the local provider starts each server in its own session
        except ProcessLookupError:
            return
        time.sleep(3)


# --- cold start ------------------------------------------------------------------------------

def post_once(port: int, body: bytes, timeout: float) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def first_prediction(port: int, body: bytes, timeout: float) -> None:
    """Until the first 200 with one prediction, or fail after FIRST_PREDICTION_TIMEOUT_S."""
    deadline = time.monotonic() + FIRST_PREDICTION_TIMEOUT_S
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            status, payload = post_once(port, body, timeout)
            if status == 200 and len(json.loads(payload)["predictions"]) == 1:
                return
            last = f"HTTP {status}: {payload[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"no successful prediction within {FIRST_PREDICTION_TIMEOUT_S}s: {last}")


def server_phases(log_path: Path, started_wall: float) -> dict[str, float]:
    """Seconds from `cloudml deploy` starting to milestones in the server's own log."""
    milestones = {
        "server logs its first line": lambda line: True,
        "packaging done, socket bound": lambda line: " serving " in line and " on http" in line,
        "model loaded and warmed up": lambda line: "loaded and warmed up" in line,
    }
    phases: dict[str, float] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return phases
    for line in lines:
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue  # TensorFlow's own lines have another format
        for label, matches in milestones.items():
            if label not in phases and matches(line):
                phases[label] = stamp - started_wall
    return phases


def tensorflow_load_baseline(version_dir: Path, runs: int = 3) -> list[float]:
    code = f"import tensorflow as tf; tf.saved_model.load({str(version_dir)!r})"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=CLI_TIMEOUT_S, env=tf_env())
        times.append(time.perf_counter() - start)
    return times


def raw_signature(version_dir: Path, instance_file: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("raw_signature.py")), str(version_dir),
         "--instance", str(instance_file), "--batch-sizes", "1,32,128", "--seconds", str(RAW_SECONDS_PER_BATCH)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=tf_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"raw_signature.py failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- load ------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    clients: int
    new_connection: bool


def scenarios(concurrency: int) -> list[Scenario]:
    # Fresh connections sit beside kept-alive ones because they behave very differently here
    # (see benchmarks/README.md); one client gives the unloaded latency.
    counts = [1] if concurrency == 1 else [1, concurrency]
    return [Scenario(f"served, {c} client{'s' if c > 1 else ''}, {'new conn/request' if fresh else 'keep-alive'}", c, fresh)
            for c in counts for fresh in (False, True)]


def drive(scenario: Scenario, port: int, body: bytes, server_pid: int, args) -> dict:
    cpu = ProcessCPU(server_pid)
    use_wrk = not scenario.new_connection and (args.generator == "wrk" or (args.generator == "auto" and loadgen.wrk_available()))
    common = dict(clients=scenario.clients, duration=args.duration, warmup=args.warmup,
                  timeout=args.request_timeout, on_window=cpu.watch)
    print(f"  {scenario.name}: {args.warmup:g}s warm-up + {args.duration:g}s ...", flush=True)
    if use_wrk:
        result = loadgen.run_wrk(LOOPBACK, port, "/invocations", body, **common)
    else:
        result = loadgen.run_python(LOOPBACK, port, "/invocations", body, max_requests=args.max_requests,
                                    new_connection=scenario.new_connection, **common)
    server_cpu = cpu.result()
    return {
        "scenario": scenario.name, "generator": result.generator, "clients": scenario.clients,
        "requests_per_s": result.requests_per_s, "samples_per_s": result.requests_per_s,  # one instance each
        "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "successes": result.successes,
        "errors": result.errors, "duration_s": result.duration_s,
        "server_cpu_cores": server_cpu / result.duration_s if server_cpu is not None else None,
        "client_cpu_cores": result.client_cpu_s / result.duration_s if result.client_cpu_s is not None else None,
    }


# --- report ----------------------------------------------------------------------------------

def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict) -> None:
    m = report["machine"]
    print()
    print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), python {m['python']}, tensorflow {m['tensorflow']}, "
          f"cloudml {m['cloudml']}")
    print("load average (1/5/15 min) at start: {:.2f} {:.2f} {:.2f}, at end: {:.2f} {:.2f} {:.2f}".format(
        *m["load_average_at_start"], *report["load_average_at_end"]))
    c = report["cold_start"]
    print()
    print(f"cold start (deploy -> first 200):  {c['deploy_to_first_prediction_s']:.2f} s"
          f"   (cloudml deploy returned after {c['deploy_command_s']:.2f} s)")
    for label, seconds in c["server_phases_s"].items():
        print(f"  {label:<32} +{seconds:.2f} s")
    base = c["tensorflow_import_and_load_s"]
    print(f"python -c 'import tensorflow; tf.saved_model.load(...)': median {sorted(base)[len(base) // 2]:.2f} s,"
          f" min {min(base):.2f} s ({len(base)} runs)")
    if report.get("training_s"):
        print(f"(training the seed CNN took {report['training_s']:.1f} s; not part of any figure above)")

    rows = [(r["scenario"], r["requests_per_s"], r["samples_per_s"], r["p50_ms"], r["p99_ms"],
             str(sum(r["errors"].values())) + (f" {r['errors']}" if r["errors"] else "")) for r in report["served"]]
    rows += [(f"raw signature, batch {b['batch_size']}", b["calls_per_s"], b["samples_per_s"], b["p50_ms"], b["p99_ms"], "-")
             for b in report["raw"]["batches"]]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'scenario':<{width}} | {'requests/s':>10} | {'samples/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | errors")
    print(f"{'-' * width}-|-{'-' * 10}-|-{'-' * 10}-|-{'-' * 7}-|-{'-' * 7}-|-------")
    for name, rps, sps, p50, p99, errors in rows:
        print(f"{name:<{width}} | {rps:>10.1f} | {sps:>10.1f} | {fmt(p50, '7.2f')} | {fmt(p99, '7.2f')} | {errors}")

    raw1 = report["raw"]["batches"][0]["samples_per_s"]
    print()
    print(f"served requests/s / raw batch-1 samples/s ({raw1:.0f}/s), with the CPU each side used (cores):")
    for r in report["served"]:
        print(f"  {r['scenario']:<{width}}  {r['requests_per_s'] / raw1:6.3f}   server {fmt(r['server_cpu_cores'], '.2f')},"
              f" load generator {fmt(r['client_cpu_cores'], '.2f')} ({r['generator']})")
    print()
    python_generator = "benchmarks/loadgen.py (processes x threads, blocking raw sockets, closed loop)"
    if any(r["generator"].startswith("wrk") for r in report["served"]):
        print(f"load generator: wrk (Lua POST body) for the keep-alive rows, {python_generator} for the others")
    else:
        print(f"load generator: {python_generator}")
    print("latencies: served = client-side per request (one instance each); raw = per signature call.")


# --- main ------------------------------------------------------------------------------------

def run(args, workdir: Path, cli: CLI, report: dict) -> None:
    """Fill `report` as it goes, so the caller's cleanup knows what was deployed even on failure."""
    report.update(machine=machine_info(), settings={k: str(v) for k, v in vars(args).items()})
    model = args.model
    if model is None:
        model, report["training_s"] = train_model(workdir)
    body = json.dumps({"instances": [one_instance(model)]}).encode()
    instance_file = workdir / "instance.json"
    instance_file.write_bytes(body)

    print(f"deploying {model} as {DEPLOYMENT} (CLOUDML_HOME={cli.home}) ...", flush=True)
    started_wall, started = time.time(), time.perf_counter()
    deployment = deploy(cli, model)
    deployed = time.perf_counter()
    report["deployment"] = deployment
    port = int(deployment["details"]["port"])
    first_prediction(port, body, args.request_timeout)
    version_dir = Path(deployment["details"]["package"]) / str(deployment["model_version"])
    report["cold_start"] = {
        "deploy_command_s": deployed - started,
        "deploy_to_first_prediction_s": time.perf_counter() - started,
        "server_phases_s": server_phases(Path(deployment["details"]["log"]), started_wall),
    }
    print("timing python -c 'import tensorflow; tf.saved_model.load(...)' ...", flush=True)
    report["cold_start"]["tensorflow_import_and_load_s"] = tensorflow_load_baseline(version_dir)

    print("measuring the signature in-process ...", flush=True)
    report["raw"] = raw_signature(version_dir, instance_file)
    report["machine"]["tensorflow"] = report["raw"]["tensorflow"]

    print(f"driving http://{LOOPBACK}:{port}/invocations ...", flush=True)
    report["served"] = [drive(s, port, body, int(deployment["details"]["pid"]), args) for s in scenarios(args.concurrency)]
    report["load_average_at_end"] = os.getloadavg()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    # SIGTERM should clean up like Ctrl-C does: the finally below deletes the deployment.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="cloudml-bench-"))
    cli = CLI(home=workdir / "home", workdir=workdir)
    report: dict = {}
    try:
        run(args, workdir, cli, report)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        delete(cli, report.get("deployment") or _deployment_from_state(cli))
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _deployment_from_state(cli: CLI) -> dict | None:
    """If `run` failed after deploying, ask the CLI what it deployed (for the pid)."""
    try:
        result = cli.run("status", DEPLOYMENT, "--provider", "local", "--output", "json")
        return json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
