"""Serving metrics in the Prometheus text format, with no dependency: a few histograms and counters."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: list[float]):
        self.name = name
        self.help = help_text
        self.buckets = sorted(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.buckets + [float("inf")], self.counts):
            cumulative += count
            label = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{self.name}_bucket{{le="{label}"}} {cumulative}')
        lines += [f"{self.name}_sum {self.sum:.6f}", f"{self.name}_count {self.count}"]
        return lines


class ServingMetrics:
    def __init__(self, info: Callable[[], dict[str, str]] | None = None) -> None:
        self.info = info  # labels of cloudml_model_info: which model, which backend serves it
        self.batch_size = Histogram("cloudml_batch_size", "Instances per model call.", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
        self.queue_seconds = Histogram("cloudml_queue_seconds", "Time a request waited before its model call started.", seconds)
        self.model_seconds = Histogram("cloudml_model_seconds", "Duration of one model call.", seconds)
        self.responses: Counter[int] = Counter()
        self.dropped: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count_response(self, status: int) -> None:
        with self._lock:
            self.responses[status] += 1

    def count_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def render(self) -> str:
        lines: list[str] = []
        if self.info is not None:
            labels = ",".join(f'{key}="{_label(value)}"' for key, value in self.info().items())
            lines += ["# HELP cloudml_model_info The served model and the runtime backend serving it.", "# TYPE cloudml_model_info gauge",
                      f"cloudml_model_info{{{labels}}} 1"]
        for histogram in (self.batch_size, self.queue_seconds, self.model_seconds):
            lines += histogram.render()
        lines += ["# HELP cloudml_responses_total HTTP responses by status code.", "# TYPE cloudml_responses_total counter"]
        lines += [f'cloudml_responses_total{{code="{code}"}} {n}' for code, n in sorted(self.responses.items())]
        lines += ["# HELP cloudml_requests_dropped_total Requests answered without running the model: "
                  "overloaded (queue full), deadline (waited too long), disconnected (caller gone).",
                  "# TYPE cloudml_requests_dropped_total counter"]
        lines += [f'cloudml_requests_dropped_total{{reason="{reason}"}} {self.dropped[reason]}' for reason in ("overloaded", "deadline", "disconnected")]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
