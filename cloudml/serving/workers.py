"""Extra serving processes, so one server can use more cores than one event loop can feed.

The first process serves as soon as its model is warm; only then does it start the others,
each a plain `cloudml serve` of the same package on the same port (SO_REUSEPORT shares the
connections). They start after, not with, the first one, so a deploy's cold start is unchanged.
A worker that dies is restarted; all of them stop with the first process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("cloudml.serving")

MAX_RESTARTS = 5


def default_workers() -> int:
    """One process per four cores, at most eight: on two cores one process with batching beats
    two (each would batch half as much); on big machines one event loop is the limit."""
    return min(8, max(1, (os.cpu_count() or 1) // 4))


def tensorflow_threads(workers: int) -> int:
    """Split the cores between the processes instead of letting each TensorFlow take them all."""
    return max(1, (os.cpu_count() or 1) // workers)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the first process dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class WorkerPool:
    def __init__(self, *, package: Path, host: str, port: int, count: int, serve_args: list[str], listen_fd: int | None = None):
        # A local deployment's socket is inherited, not joined with SO_REUSEPORT (see serving.handover).
        self.listen_fd = listen_fd
        self.command = [
            sys.executable, "-m", "cloudml", "serve", str(package), "--host", host, "--port", str(port),
            *([] if listen_fd is not None else ["--reuse-port"]), "--workers", "1", *serve_args,
        ]
        self.count = count
        self.processes: list[subprocess.Popen] = []
        self.restarts = 0
        self._monitor: asyncio.Task | None = None

    def _spawn(self) -> subprocess.Popen:
        # Same stdout/stderr as this process: one log file for the whole server.
        # A local deployment's workers share its one listening socket instead of joining the port.
        fds: tuple[int, ...] = () if self.listen_fd is None else (self.listen_fd,)
        env = None if self.listen_fd is None else {**os.environ, "CLOUDML_LISTEN_FD": str(self.listen_fd)}
        return subprocess.Popen(self.command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                                pass_fds=fds, env=env)

    async def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]
        log.info("started %d more serving process(es): %s", self.count, ", ".join(str(p.pid) for p in self.processes))
        self._monitor = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for index, proc in enumerate(self.processes):
                if proc.poll() is None:
                    continue
                if self.restarts >= MAX_RESTARTS:
                    log.error("serving process %d exited with %s; not restarting (restarted %d times already)", proc.pid, proc.returncode, self.restarts)
                    continue
                self.restarts += 1
                log.warning("serving process %d exited with %s; restarting it", proc.pid, proc.returncode)
                self.processes[index] = self._spawn()

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
