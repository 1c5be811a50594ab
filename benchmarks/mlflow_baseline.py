"""`mlflow models serve` on the same Keras model, from a virtual environment of its own.

    .venv/bin/python benchmarks/mlflow_baseline.py install [--venv PATH]   # only the install step

`serve.py` uses three steps, each bounded in time:

1. `ensure_venv`: a venv (default `~/.cache/cloudml-bench/mlflow-venv`, reused across runs)
   with `pip install mlflow tensorflow-cpu==<ours> keras==<ours>`, so the model is loaded by the
   same TensorFlow and Keras that cloudml uses. pip's output is streamed as progress.
2. `save_model`: that venv's python loads the `.h5` with Keras and writes it in MLflow format
   with `mlflow.tensorflow.save_model` (with an input example, so it gets a signature).
3. `MlflowServer`: `mlflow models serve -m MODEL -h 127.0.0.1 -p PORT --env-manager local` in its
   own process group (its scoring server forks workers), started, timed to the first 200 from
   `POST /invocations`, and stopped with its whole group.

Any failure raises `MlflowUnavailable` with a one-line reason; `serve.py` prints
"mlflow skipped: <reason>" and carries on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

from procs import ProcessGroup, wait_for_prediction

DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudml-bench" / "mlflow-venv"
INSTALL_TIMEOUT_S = 15 * 60
SAVE_TIMEOUT_S = 300
START_TIMEOUT_S = 180
DONE_MARKER = ".cloudml-bench-installed"


class MlflowUnavailable(Exception):
    """mlflow could not be installed, could not save the model, or did not serve it."""


def requirements() -> list[str]:
    """mlflow plus exactly the TensorFlow and Keras of the environment running this script."""
    reqs = ["mlflow"]
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
            break
        except metadata.PackageNotFoundError:
            continue
    else:
        raise MlflowUnavailable("TensorFlow is not installed in this environment, so there is no version to match")
    try:
        reqs.append(f"keras=={metadata.version('keras')}")
    except metadata.PackageNotFoundError:
        pass
    return reqs


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, *, timeout: float = INSTALL_TIMEOUT_S, log=print) -> str:
    """Create or reuse the venv; return the installed mlflow version."""
    reqs = requirements()
    marker = venv / DONE_MARKER
    if marker.is_file() and marker.read_text().split() == reqs and venv_python(venv).is_file():
        log(f"mlflow: reusing {venv} ({' '.join(reqs)})")
    else:
        deadline = time.monotonic() + timeout
        if not venv_python(venv).is_file():
            log(f"mlflow: creating {venv} ...")
            venv.parent.mkdir(parents=True, exist_ok=True)
            _run_logged([sys.executable, "-m", "venv", "--clear", str(venv)], deadline, log)
        log(f"mlflow: pip install {' '.join(reqs)} (bounded to {timeout / 60:.0f} min; pip's cache makes reruns fast) ...")
        _run_logged([str(venv_python(venv)), "-m", "pip", "install", "--progress-bar", "off",
                     "--disable-pip-version-check", *reqs], deadline, log)
        marker.write_text(" ".join(reqs) + "\n")
    code = "import importlib.metadata as m; print(m.version('mlflow'))"
    out = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise MlflowUnavailable(f"mlflow does not import in {venv}: {_last_line(out.stderr)}")
    return out.stdout.strip()


def _run_logged(argv: list[str], deadline: float, log) -> None:
    """Run `argv`, echoing the lines that show progress, killed at `deadline`."""
    group = ProcessGroup.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []

    def pump() -> None:
        for line in group.process.stdout:
            line = line.rstrip()
            tail[:] = (tail + [line])[-20:]
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "ERROR")):
                log(f"  pip: {line[:150]}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = group.process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        group.stop()
        raise MlflowUnavailable(f"{Path(argv[0]).name} {' '.join(argv[1:3])} did not finish in time (killed)") from None
    finally:
        reader.join(5)
    if code != 0:
        raise MlflowUnavailable(f"{' '.join(argv[:4])} ... exited {code}: {_last_line(chr(10).join(tail))}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


SAVE_SCRIPT = """
import json, sys
import numpy as np
import keras, mlflow, mlflow.tensorflow
source, target, instance_file = sys.argv[1:4]
model = keras.models.load_model(source, compile=False)
example = np.asarray(json.load(open(instance_file))["instances"], dtype="float32")
mlflow.tensorflow.save_model(model, target, input_example=example)
print(json.dumps({"mlflow": mlflow.__version__, "keras": keras.__version__}))
"""


def save_model(venv: Path, model: Path, target: Path, instance_file: Path) -> None:
    """Write `model` (a Keras file) as an MLflow model folder `target`, with the venv's mlflow."""
    try:
        out = subprocess.run([str(venv_python(venv)), "-c", SAVE_SCRIPT, str(model), str(target), str(instance_file)],
                             capture_output=True, text=True, timeout=SAVE_TIMEOUT_S, env=_quiet_env())
    except subprocess.TimeoutExpired:
        raise MlflowUnavailable(f"saving the model in MLflow format took over {SAVE_TIMEOUT_S}s") from None
    if out.returncode != 0:
        raise MlflowUnavailable(f"mlflow.tensorflow.save_model failed: {_last_line(out.stderr)}")


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
    # No tracking server, no telemetry, no network: mlflow only reads a local folder here.
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
            "MLFLOW_TRACKING_URI": "file:///dev/null/none"}


class MlflowServer:
    """`mlflow models serve` on 127.0.0.1:port, in its own process group, logging to `log_path`."""

    def __init__(self, venv: Path, model_dir: Path, port: int, log_path: Path, workers: int = 1):
        self.argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "-h", "127.0.0.1",
                     "-p", str(port), "--workers", str(workers), "--env-manager", "local"]
        self.port = port
        self.log_path = log_path
        self.group: ProcessGroup | None = None

    def start(self, body: bytes) -> float:
        """Start it and return the seconds until the first 200 from POST /invocations."""
        env = {**_quiet_env(), "PATH": f"{self.argv[0].rsplit('/', 1)[0]}:{os.environ.get('PATH', '')}"}
        started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.group = ProcessGroup.start(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.log_path.parent)
        try:
            wait_for_prediction(self.port, body, timeout=START_TIMEOUT_S, alive=self.group.alive,
                                accept=_has_one_prediction)
        except RuntimeError as exc:
            raise MlflowUnavailable(f"mlflow models serve did not answer: {exc}; log tail: {self.log_tail()}") from None
        return time.perf_counter() - started

    def workers(self) -> int:
        return len(self.group.members()) if self.group else 0

    def log_tail(self) -> str:
        try:
            return _last_line(self.log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.group:
            self.group.stop()


def _has_one_prediction(payload: bytes) -> bool:
    data = json.loads(payload)
    predictions = data.get("predictions", data) if isinstance(data, dict) else data
    return len(predictions) == 1


def main() -> int:
    parser = argparse.ArgumentParser(description="install mlflow's venv the way serve.py does")
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    try:
        print(f"mlflow {ensure_venv(args.venv)} in {args.venv}")
    except MlflowUnavailable as exc:
        print(f"mlflow unavailable: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
