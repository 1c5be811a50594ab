"""One measured scenario: closed-loop load on POST /invocations, plus what the server says.

`drive` runs the load generator (wrk when chosen, else benchmarks/loadgen.py), samples the
CPU the server's processes used over the measured window, and, for cloudml servers, reads
GET /metrics before and after to get the mean batch size the server formed (delta of
cloudml_batch_size_sum / delta of cloudml_batch_size_count) and the mean model-call and queue
times. The metrics delta covers the warm-up too (the server cannot tell them apart); the
load is the same in both, so the means are the same.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import loadgen
from procs import LOOPBACK, get_text

METRIC_LINE = re.compile(r"^(cloudml_(?:batch_size|queue_seconds|model_seconds)_(?:sum|count)) (\S+)$", re.MULTILINE)


class ProcessCPU:
    """CPU some processes (all their threads) use between two monotonic instants, from /proc."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None

    def _read(self) -> float:
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / os.sysconf("SC_CLK_TCK")

    def watch(self, start: float, end: float) -> None:
        def sample():
            try:
                time.sleep(max(0.0, start - time.monotonic()))
                before = self._read()
                time.sleep(max(0.0, end - time.monotonic()))
                self.seconds = self._read() - before
            except (OSError, IndexError, ValueError):
                self.seconds = None  # a server process is gone; the errors column will say so
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def result(self) -> float | None:
        if self._thread:
            self._thread.join(5)
        return self.seconds


class MachineCPU(ProcessCPU):
    """CPU the whole machine was busy (all processes, from /proc/stat) over the same window, so
    the report shows when something besides the server and the load generator was running."""

    def __init__(self):
        super().__init__([])

    def _read(self) -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest is inside user


def read_metrics(port: int) -> dict[str, float]:
    return {name: float(value) for name, value in METRIC_LINE.findall(get_text(port, "/metrics"))}


def batching_figures(before: dict[str, float], after: dict[str, float]) -> dict:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    calls = delta("cloudml_batch_size_count")
    queued = delta("cloudml_queue_seconds_count")
    return {
        "model_calls": int(calls),
        "mean_batch_size": delta("cloudml_batch_size_sum") / calls if calls else None,
        "mean_model_call_ms": delta("cloudml_model_seconds_sum") / calls * 1000 if calls else None,
        "mean_queue_ms": delta("cloudml_queue_seconds_sum") / queued * 1000 if queued else None,
    }


def use_wrk(choice: str) -> bool:
    return choice == "wrk" or (choice == "auto" and loadgen.wrk_available())


def drive(name: str, port: int, body: bytes, *, clients: int, server_pids: list[int], args,
          request_timeout: float | None = None, cloudml_metrics: bool = True) -> dict:
    timeout = request_timeout or args.request_timeout
    cpu, machine = ProcessCPU(server_pids), MachineCPU()

    def on_window(start: float, end: float) -> None:
        cpu.watch(start, end)
        machine.watch(start, end)

    common = dict(clients=clients, duration=args.duration, warmup=args.warmup, timeout=timeout, on_window=on_window)
    print(f"  {name}: {args.warmup:g}s warm-up + {args.duration:g}s, {clients} client(s) ...", flush=True)
    before = read_metrics(port) if cloudml_metrics else None
    if use_wrk(args.generator):
        result = loadgen.run_wrk(LOOPBACK, port, "/invocations", body, **common)
    else:
        result = loadgen.run_python(LOOPBACK, port, "/invocations", body, max_requests=args.max_requests, **common)
    server_cpu, machine_cpu = cpu.result(), machine.result()
    row = {
        "scenario": name, "generator": result.generator, "clients": clients,
        "requests_per_s": result.requests_per_s, "samples_per_s": result.requests_per_s,  # one instance each
        "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "successes": result.successes,
        "errors": result.errors, "duration_s": result.duration_s, "request_timeout_s": timeout,
        "server_cpu_cores": server_cpu / result.duration_s if server_cpu is not None else None,
        "client_cpu_cores": result.client_cpu_s / result.duration_s if result.client_cpu_s is not None else None,
        "machine_busy_cores": machine_cpu / result.duration_s if machine_cpu is not None else None,
    }
    if cloudml_metrics:
        row.update(batching_figures(before, read_metrics(port)))
    return row
