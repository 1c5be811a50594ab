"""Closed-loop HTTP load: N clients, each sending one request at a time (over a kept-alive
connection, or a new connection per request), for a warm-up and then a measured window.

Two generators produce the same `LoadResult`:

* `run_python`: several processes (so the GIL of one is not the limit on 2 cores), each with
  threads doing blocking I/O on raw sockets. The request bytes are built once and sent with
  one `sendall`, and a response is parsed only as far as its status line and Content-Length,
  so a request costs the client a few tens of microseconds; each process reports the CPU it
  used so the report can show the generator was not the bottleneck.
* `run_wrk`: wrk with a Lua script for the POST body, when `wrk` is on PATH (its CPU comes
  from getrusage(RUSAGE_CHILDREN) around the measured run).

Only responses with status 200 count as successes; everything else is counted by kind.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 64 * 1024
RECONNECT_PAUSE_S = 0.05  # after a failure, so a refused port does not become a busy loop


@dataclass
class LoadResult:
    generator: str
    clients: int
    duration_s: float
    successes: int  # 200 responses completed inside the measured window
    errors: dict[str, int]  # kind -> count, inside the measured window
    p50_ms: float | None
    p99_ms: float | None
    client_cpu_s: float | None = None  # CPU the generator itself used during the window

    @property
    def requests_per_s(self) -> float:
        return self.successes / self.duration_s


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the Python generator ----------------------------------------------------------------------

class ResponseError(Exception):
    """The server answered something this client cannot parse."""


def read_response(sock: socket.socket) -> tuple[int, bool]:
    """Read one response; return (status, whether the connection stays open)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        buffer += chunk
        if len(buffer) > MAX_HEADER_BYTES:
            raise ResponseError("response headers too large")
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" not in headers:
        raise ResponseError("response without Content-Length")  # uvicorn always sends it
    remaining = int(headers["content-length"]) - len(body)
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ConnectionResetError("server closed the connection mid-body")
        remaining -= len(chunk)
    return status, headers.get("connection", "").lower() != "close"


@dataclass
class _ClientStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


def _client_loop(address, request, timeout, warmup_end, measure_end, budget, new_connection, stats):
    """One client: a request at a time until the window closes or its request budget is spent."""
    sock = None
    sent = 0
    while sent < budget and time.monotonic() < measure_end:
        start = time.monotonic()
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=timeout)
                # Our side must not add Nagle delays of its own (the request is one send anyway).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent += 1
            sock.sendall(request)
            status, keep_open = read_response(sock)
        except (OSError, ResponseError, ValueError, IndexError) as exc:
            if warmup_end <= time.monotonic() <= measure_end:
                stats.errors[_error_kind(exc)] += 1
            if sock is not None:
                sock.close()
                sock = None
            time.sleep(RECONNECT_PAUSE_S)
            continue
        end = time.monotonic()
        if warmup_end <= end <= measure_end:
            if status == 200:
                stats.latencies_ms.append((end - start) * 1000)
            else:
                stats.errors[f"HTTP {status}"] += 1
        if new_connection or not keep_open:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    return type(exc).__name__


def _worker(pipe, address, request, threads, timeout, budget_per_client, new_connection):
    """A generator process: start its clients when the parent says when, report when done."""
    pipe.send("ready")
    warmup_end, measure_end = pipe.recv()
    stats = [_ClientStats() for _ in range(threads)]
    clients = [
        threading.Thread(target=_client_loop, daemon=True,
                         args=(address, request, timeout, warmup_end, measure_end, budget_per_client, new_connection, s))
        for s in stats
    ]
    for client in clients:
        client.start()
    # CPU over the measured window only: the warm-up includes connecting.
    time.sleep(max(0.0, warmup_end - time.monotonic()))
    cpu_start = time.process_time()
    time.sleep(max(0.0, measure_end - time.monotonic()))
    cpu_used = time.process_time() - cpu_start
    for client in clients:
        client.join(timeout + 1)  # a request in flight at the end may take up to `timeout`
    errors = Counter()
    for s in stats:
        errors.update(s.errors)
    pipe.send(([ms for s in stats for ms in s.latencies_ms], dict(errors), cpu_used))
    pipe.close()


def _receive(pipe, timeout: float):
    """The next message from a worker, or None if it died or stayed silent for `timeout` s."""
    try:
        return pipe.recv() if pipe.poll(timeout) else None
    except EOFError:
        return None


def run_python(
    host: str, port: int, path: str, body: bytes, *, clients: int, duration: float, warmup: float,
    timeout: float, max_requests: int, processes: int | None = None, new_connection: bool = False,
    on_window=None,
) -> LoadResult:
    """Drive `clients` closed-loop clients spread over `processes` processes.

    `on_window(start, end)` is called (in this process) with the monotonic bounds of the
    measured window, e.g. to sample the server's CPU over the same interval."""
    processes = max(1, min(processes or os.cpu_count() or 2, clients))
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: nothing inherited from us
    request = build_request(host, port, path, body)
    budget = max(1, max_requests // clients)
    workers = []
    for index in range(processes):
        threads = clients // processes + (1 if index < clients % processes else 0)
        parent_end, child_end = spawn.Pipe()
        proc = spawn.Process(target=_worker, daemon=True,
                             args=(child_end, (host, port), request, threads, timeout, budget, new_connection))
        proc.start()
        workers.append((proc, parent_end))
    try:
        for _proc, pipe in workers:
            if _receive(pipe, 60) != "ready":
                raise RuntimeError("a load-generator process did not start")
        # Clocks agree across processes: time.monotonic() is CLOCK_MONOTONIC, system-wide on Linux.
        warmup_end = time.monotonic() + warmup
        measure_end = warmup_end + duration
        for _, pipe in workers:
            pipe.send((warmup_end, measure_end))
        if on_window:
            on_window(warmup_end, measure_end)
        latencies, errors, cpu = [], Counter(), 0.0
        for _proc, pipe in workers:
            report = _receive(pipe, max(0.0, measure_end - time.monotonic()) + timeout + 10)
            if report is None:
                raise RuntimeError("a load-generator process died or did not report back in time")
            worker_latencies, worker_errors, worker_cpu = report
            latencies += worker_latencies
            errors.update(worker_errors)
            cpu += worker_cpu
    finally:
        for proc, _ in workers:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
    most_threads = -(-clients // processes)
    return LoadResult(f"python, {processes} proc x {most_threads} thr", clients, duration, len(latencies), dict(errors),
                      percentile(latencies, 50), percentile(latencies, 99), cpu)


# --- wrk ------------------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- Written by benchmarks/loadgen.py. Each wrk thread loads this file into its own Lua state.
wrk.method = "POST"
wrk.body = io.open(os.getenv("BENCH_BODY_FILE"), "rb"):read("*a")
wrk.headers["Content-Type"] = "application/json"

not_ok = 0  -- per thread: responses whose status is not 200 (wrk itself only flags >= 400)

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 then not_ok = not_ok + 1 end
end

function done(summary, latency, requests)
  local total_not_ok = 0
  for _, thread in ipairs(threads) do
    total_not_ok = total_not_ok + thread:get("not_ok")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "not_ok": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %.0f, "p99_us": %.0f}\n',
    summary.requests, summary.duration, total_not_ok, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _wrk_threads(clients: int) -> int:
    return max(1, min(os.cpu_count() or 2, clients))


def _wrk(url: str, script: str, body_file: str, *, clients: int, seconds: float, timeout: float) -> dict:
    argv = ["wrk", "-t", str(_wrk_threads(clients)), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
            "--timeout", f"{max(1, round(timeout))}s", "-s", script, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout + 30,
                         env={**os.environ, "BENCH_BODY_FILE": body_file})
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")
    return json.loads(match.group(1))


def run_wrk(host: str, port: int, path: str, body: bytes, *, clients: int, duration: float, warmup: float,
            timeout: float, on_window=None) -> LoadResult:
    """wrk has no warm-up phase of its own, so a separate short run comes first.
    Its latency percentiles include the (rare) non-200 responses."""
    url = f"http://{host}:{port}{path}"
    with tempfile.TemporaryDirectory(prefix="cloudml-wrk-") as folder:
        script, body_file = os.path.join(folder, "post.lua"), os.path.join(folder, "body.json")
        with open(script, "w") as handle:
            handle.write(WRK_SCRIPT)
        with open(body_file, "wb") as handle:
            handle.write(body)
        if warmup > 0:
            _wrk(url, script, body_file, clients=clients, seconds=warmup, timeout=timeout)
        if on_window:
            start = time.monotonic()
            on_window(start, start + duration)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stats = _wrk(url, script, body_file, clients=clients, seconds=duration, timeout=timeout)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk is the only child that ends in that interval, so the delta is its CPU (measured run only).
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    measured = stats["duration_us"] / 1e6
    errors = {"HTTP not 200": stats["not_ok"], "connect": stats["connect"], "read": stats["read"],
              "write": stats["write"], "timeout": stats["timeout"]}
    errors = {kind: count for kind, count in errors.items() if count}
    return LoadResult(f"wrk, {_wrk_threads(clients)} thr", clients, measured,
                      stats["requests"] - stats["not_ok"], errors, stats["p50_us"] / 1000, stats["p99_us"] / 1000, wrk_cpu)
