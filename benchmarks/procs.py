"""Processes the benchmark starts and must always stop, and the HTTP probe it waits with.

Every server runs in its own session (process group), so stopping it also stops the workers it
forked; `ProcessGroup.stop` sends SIGTERM to the group, then SIGKILL to whatever is left.
All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass
class ProcessGroup:
    process: subprocess.Popen

    @classmethod
    def start(cls, argv: list[str], **popen) -> ProcessGroup:
        return cls(subprocess.Popen(argv, start_new_session=True, **popen))

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def members(self) -> list[int]:
        """The pids in this process group (the leader and what it forked), from /proc."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == self.pid:  # field 5 of stat: the process group id
                    pids.append(int(entry.name))
        return pids

    def stop(self, grace: float = 10.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.members():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.members():
                if self.process.poll() is None:
                    try:
                        self.process.wait(0.1)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.1)
        if self.process.poll() is None:
            self.process.wait(5)


def post_once(port: int, body: bytes, timeout: float, path: str = "/invocations") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_text(port: int, path: str, timeout: float = 10.0) -> str:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return payload.decode()
    finally:
        conn.close()


def wait_for_prediction(port: int, body: bytes, *, timeout: float, accept: Callable[[bytes], bool],
                        alive: Callable[[], bool] = lambda: True, request_timeout: float = 30.0) -> None:
    """Poll POST /invocations until a 200 whose payload `accept`s; RuntimeError after `timeout`
    seconds, or as soon as `alive()` says the server process has exited."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server exited ({last})")
        try:
            status, payload = post_once(port, body, min(request_timeout, max(0.1, deadline - time.monotonic())))
            if status == 200 and accept(payload):
                return
            last = f"HTTP {status}: {payload[:200]!r}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"no successful prediction within {timeout:g}s ({last})")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_serving_pids(port: int, count: int, *, timeout: float) -> set[int]:
    """The pids answering GET /ping on `port` (one new connection each), once `count` have."""
    deadline = time.monotonic() + timeout
    pids: set[int] = set()
    while len(pids) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(pids)} of {count} serving processes answered within {timeout:g}s")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/ping")
            response = conn.getresponse()
            if response.status == 200:
                pids.add(int(json.loads(response.read())["pid"]))
        except (OSError, ValueError, KeyError):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return pids


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its peak) of a process, in KiB, from /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])  # "123456 kB"
    return fields
