"""Start, watch and stop local serving processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudml import httpclient


def start_server(
    *,
    model: Path,
    package_dir: Path,
    log_path: Path,
    socket_path: Path,
    error_file: Path,
    host: str,
    port: int,
    name: str,
    version: int | None,
    env: dict[str, str],
) -> subprocess.Popen:
    """Start `cloudml serve` detached from this shell, logging to `log_path`."""
    command = [
        sys.executable, "-m", "cloudml", "serve", str(model),
        "--host", host, "--port", str(port), "--name", name,
        "--package-dir", str(package_dir), "--reuse-port",
        "--unix-socket", str(socket_path), "--error-file", str(error_file),
    ]
    if version is not None:
        command += ["--model-version", str(version)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, **env, "CLOUDML_DEPLOYMENT": name, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # survives the CLI that started it, and Ctrl-C in that shell
            close_fds=True,
        )


def is_running(pid: int, socket_path: Path) -> bool:
    """True when `pid` is alive and is the server we started (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    if b"<defunct>" in cmdline or not cmdline:
        return False
    return str(socket_path).encode() in cmdline


def ping(socket_path: Path, timeout: float = 2.0) -> bool:
    try:
        result = httpclient.request("GET", "http://localhost/ping", unix_socket=str(socket_path), timeout=timeout)
    except OSError:
        return False
    return result.status == 200


def drain_server(pid: int, socket_path: Path, *, seconds: float) -> None:
    """Ask a server to stop taking connections and to send kept-alive clients elsewhere
    (SIGUSR1, see cloudml.serving.server), then give its clients `seconds` to move."""
    if seconds <= 0 or not is_running(pid, socket_path):
        return
    try:
        os.killpg(pid, signal.SIGUSR1)
    except (ProcessLookupError, PermissionError):
        return
    time.sleep(seconds)


def stop_server(pid: int, socket_path: Path, *, grace: float = 20.0) -> None:
    """SIGTERM (uvicorn finishes in-flight requests), then SIGKILL after `grace` seconds."""
    if not is_running(pid, socket_path):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just probe.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a file, read from its end (logs can grow large)."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, 64 * 1024)
            while True:
                handle.seek(size - block)
                data = handle.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 2)
    except FileNotFoundError:
        return ""
    return b"\n".join(data.splitlines()[-lines:]).decode(errors="replace")
