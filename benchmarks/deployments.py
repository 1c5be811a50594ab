"""cloudml deployments driven through the real CLI, and what the benchmark reads from them.

`CLI` runs `cloudml` with a private CLOUDML_HOME, from a private folder (so no ./cloudml.yaml
and no CLOUDML_* variable of the caller's can redirect it). `CLI.deploy` times deploy -> first
200 from POST /invocations (`--runtime` when given); `CLI.serve` starts `cloudml serve` on an
existing package and times process start -> first 200 (the serving process's own cold start,
no packaging); `CLI.delete` removes a deployment and, if its server is still alive anyway,
stops its process group. `server_phases` reads milestones from the server's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from procs import LOOPBACK, ProcessGroup, free_port, wait_for_prediction

CLI_TIMEOUT_S = 300  # above the local provider's 180 s startup timeout
FIRST_PREDICTION_TIMEOUT_S = 60


def tf_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass
class Deployed:
    name: str
    record: dict  # the deploy command's JSON "deployment"
    deploy_command_s: float
    deploy_to_first_prediction_s: float
    server_phases_s: dict[str, float]

    @property
    def port(self) -> int:
        return int(self.record["details"]["port"])

    @property
    def pid(self) -> int:
        return int(self.record["details"]["pid"])

    @property
    def package(self) -> Path:
        return Path(self.record["details"]["package"])

    @property
    def version_dir(self) -> Path:
        return self.package / str(self.record["model_version"])

    @property
    def runtime(self) -> str:
        """The backend serving it, as `cloudml status` shows it."""
        return str(self.record["details"].get("runtime", "?"))


@dataclass
class CLI:
    home: Path
    workdir: Path
    deployed: dict[str, dict | None] = field(default_factory=dict)  # name -> record (None: not known yet)

    def argv(self) -> list[str]:
        script = Path(sys.executable).with_name("cloudml")
        return [str(script)] if script.is_file() else [sys.executable, "-m", "cloudml"]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in tf_env().items() if not k.startswith("CLOUDML_")}
        return {**env, "CLOUDML_HOME": str(self.home)}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv() + list(args), cwd=self.workdir, env=self.env(),
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)

    def deploy(self, model: Path, name: str, body: bytes, env: dict[str, str] | None = None, runtime: str | None = None) -> Deployed:
        """`cloudml deploy MODEL --name NAME --provider local [--runtime R]`, timed to the first prediction."""
        env_flags = [flag for key, value in (env or {}).items() for flag in ("--env", f"{key}={value}")]
        env_flags += ["--runtime", runtime] if runtime else []
        self.deployed[name] = None  # from here on, cleanup must try to delete it
        started_wall, started = time.time(), time.perf_counter()
        result = self.run("deploy", str(model.resolve()), "--name", name, "--provider", "local",
                          "-o", f"host={LOOPBACK}", *env_flags, "--output", "json")
        returned = time.perf_counter()
        if result.returncode != 0:
            raise RuntimeError(f"cloudml deploy exited {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}")
        record = json.loads(result.stdout)["deployment"]
        self.deployed[name] = record
        if urlsplit(record["endpoint_url"]).hostname != LOOPBACK:
            raise RuntimeError(f"endpoint {record['endpoint_url']} is not on {LOOPBACK}; refusing to send traffic")
        port = int(record["details"]["port"])
        wait_for_prediction(port, body, timeout=FIRST_PREDICTION_TIMEOUT_S,
                            accept=lambda payload: len(json.loads(payload)["predictions"]) == 1)
        first = time.perf_counter()
        return Deployed(name, record, returned - started, first - started,
                        server_phases(Path(record["details"]["log"]), started_wall))

    def serve(self, package: Path, body: bytes, log_path: Path) -> tuple[float, dict[str, float]]:
        """`cloudml serve PACKAGE` (already packaged: nothing to convert), timed from process
        start to its first 200; stopped again. Returns the seconds and the log's milestones."""
        port = free_port()
        with open(log_path, "wb") as log:
            started_wall, started = time.time(), time.perf_counter()
            group = ProcessGroup.start(self.argv() + ["serve", str(package), "--host", LOOPBACK, "--port", str(port)],
                                       stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.workdir)
        try:
            wait_for_prediction(port, body, timeout=FIRST_PREDICTION_TIMEOUT_S, alive=group.alive,
                                accept=lambda payload: len(json.loads(payload)["predictions"]) == 1)
            first = time.perf_counter() - started
        finally:
            group.stop()
        return first, server_phases(log_path, started_wall)

    def delete(self, name: str) -> None:
        """Delete through the CLI; if its server still runs anyway, stop it ourselves."""
        record = self.deployed.pop(name, None) or self._status(name)
        try:
            result = self.run("delete", name, "--provider", "local", "--output", "json")
            print(f"cleanup: cloudml delete {name} -> exit {result.returncode} {' '.join(result.stdout.split())}", flush=True)
        except subprocess.TimeoutExpired:
            print(f"cleanup: cloudml delete {name} timed out", flush=True)
        if record:
            stop_leftover_server(int(record["details"]["pid"]), self.home)

    def delete_all(self) -> None:
        for name in list(self.deployed):
            self.delete(name)

    def _status(self, name: str) -> dict | None:
        """If a deploy failed half-way, ask the CLI what it deployed (for the pid)."""
        try:
            result = self.run("status", name, "--provider", "local", "--output", "json")
            data = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            return None
        if isinstance(data, dict) and "deployment" in data:
            data = data["deployment"]
        return data if isinstance(data, dict) and "details" in data else None


def stop_leftover_server(pid: int, home: Path) -> None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone, as it should be
    if str(home).encode() not in cmdline:
        return  # the pid was reused by someone else's process: not ours to stop
    print(f"cleanup: server pid {pid} survived the delete; stopping it", flush=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the local provider starts each server in its own session
        except ProcessLookupError:
            return
        time.sleep(3)


def server_phases(log_path: Path, started_wall: float) -> dict[str, float]:
    """Seconds from `cloudml deploy` starting to milestones in the server's own log."""
    milestones = {
        "server logs its first line": lambda line: True,
        "packaging done": lambda line: " runtime: " in line and " (from " in line,
        "socket bound": lambda line: " serving " in line and " on http" in line,
        "model loaded and warmed up": lambda line: " loaded by " in line and "warmed up" in line,
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
