"""Start, watch and stop local serving processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cloudml import httpclient
from cloudml.serving import handover


class Tie:
    """The deploy's end of the pipe that keeps a new server alive (see cloudml.serving.handover)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    def release(self) -> None:
        """The server is recorded: it no longer depends on this process."""
        if self.write_fd >= 0:
            try:
                os.write(self.write_fd, handover.RELEASE)
            except BrokenPipeError:
                pass  # the server is gone; the next health check says so
            self.close()

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


def start_server(
    *,
    model: Path,
    package_dir: Path,
    log_path: Path,
    socket_path: Path,
    handoff_path: Path,
    error_file: Path,
    listener: socket.socket,
    tie: Tie,
    host: str,
    name: str,
    version: int | None,
    env: dict[str, str],
    runtime: str = "auto",
    sample: Path | None = None,
    snapshot: tuple[Path, str] | None = None,
) -> subprocess.Popen:
    """Start `cloudml serve` in its own session, serving `listener`, logging to `log_path`.

    It outlives this process only once `tie` is released; until then it stops when we end.
    `snapshot` is (the copy of `model` the deploy hashed, its digest): the server packages that copy."""
    port = listener.getsockname()[1]
    command = [
        sys.executable, "-m", "cloudml", "serve", str(model),
        "--host", host, "--port", str(port), "--name", name,
        "--package-dir", str(package_dir),
        "--unix-socket", str(socket_path), "--error-file", str(error_file), "--runtime", runtime,
    ]
    if sample is not None:
        command += ["--sample", str(sample)]
    if snapshot is not None:
        command += ["--snapshot", str(snapshot[0]), "--digest", snapshot[1]]
    if version is not None:
        command += ["--model-version", str(version)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    wiring = {handover.LISTEN_FD: str(listener.fileno()), handover.TIE_FD: str(tie.read_fd), handover.HANDOFF_SOCKET: str(handoff_path)}
    try:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # TensorFlow's native start-up noise is off unless the user's environment or --env asks for it.
                env={"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, **env, **wiring, "CLOUDML_DEPLOYMENT": name, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C in this shell is the deploy's to handle, not the server's
                close_fds=True,
                pass_fds=(listener.fileno(), tie.read_fd),
            )
    finally:
        os.close(tie.read_fd)


def take_over(handoff_path: Path) -> socket.socket | None:
    """The listening socket of a deployment's running server, or None when it does not hand it over."""
    try:
        return handover.receive_listener(handoff_path)
    except OSError:
        return None


def listen(host: str, port: int) -> socket.socket:
    """A new deployment's own listening socket. Without SO_REUSEPORT, so a port any program
    listens on is refused, and listening at once, so no one else can take it after us."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a deleted deployment's TIME_WAIT connections do not hold the port
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def is_running(pid: int, socket_path: Path) -> bool:
    """True when `pid` is alive and is the server we started (not a recycled pid)."""
    if pid <= 0:
        return False  # not started yet (0 would name our own process group)
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
