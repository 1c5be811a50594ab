"""The frame every benchmark script runs in: a private work folder, Ctrl-C and SIGTERM clean up
like a normal end, and the report is written (--json) before it is printed.

A benchmark is an object with `run()` (measures, filling `report`), `close()` (stops and deletes
whatever it started, also after a failure) and `report` (a dict).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class Benchmark(Protocol):
    report: dict

    def run(self) -> None: ...

    def close(self) -> None: ...


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_benchmark(make: Callable[[Path], Benchmark], *, prefix: str, json_path: Path | None,
                  print_report: Callable[[dict], Any], finish: Callable[[dict], Any] = lambda report: None) -> int:
    """Run `make(workdir)` to its end and print its report; 130 when interrupted. `finish` adds
    what is computed from the figures (targets, ratios) before the report is written."""
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    bench = make(workdir)
    started = time.perf_counter()
    try:
        bench.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report = bench.report
    report["total_s"] = time.perf_counter() - started
    finish(report)
    if json_path:  # first, so a figure survives a bug in the printing
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    print(f"\n(the whole run took {report['total_s']:.0f} s)")
    if json_path:
        print(f"wrote {json_path}")
    return 0
