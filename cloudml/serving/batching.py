"""Adaptive batching: concurrent requests for the same signature share one model call.

While a model call runs, new requests queue up; when it returns, everything queued with the same
input shapes (up to `max_batch_size` instances) goes into the next call. Under light load a
request therefore runs at once, alone; under heavy load batches grow by themselves, which is
what turns ~800 single-sample calls/s into ~19,000 samples/s on two cores. `max_wait_ms` lets
a lone request wait a little for company when the model is idle.

Each request was validated on its own before it got here, so one client's mistake cannot fail
the others; if a merged call still fails (a value only the model rejects), its requests are
retried one by one so only the offending one fails.

The queue is bounded: past `max_queue_size` waiting requests a new one is refused at once
(`Overloaded`) instead of growing the queue without limit. When a batch is formed, requests whose
deadline has passed are answered `DeadlineExceeded` and requests whose caller has gone are
dropped, neither reaching the model.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from starlette.concurrency import run_in_threadpool

from cloudml.errors import ConfigError
from cloudml.serving.errors import (
    CallerGone,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
)
from cloudml.serving.metrics import ServingMetrics

Arrays = dict[str, np.ndarray]
Gone = Callable[[], bool]  # whether the request's caller has gone away


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_batch_size: int = 64
    max_wait_ms: float = 0.0
    # Requests waiting for a model call (with batching off: waiting or running). A full queue
    # answers at once, so a flood costs a refusal each, not memory and a late answer each.
    max_queue_size: int = 512
    # A request whose model call has not started this long after it arrived is not run: its
    # caller (or the platform's 60 s invocation timeout) has most likely given up on it.
    deadline_ms: float = 30_000.0
    # Concurrent model calls. TensorFlow already spreads one call over every core, so more than
    # one mostly helps big machines keep the cores busy while Python splits and encodes results.
    model_workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1) // 8))
    # Instances one request may hold (more is refused, 413): with the body limit, what bounds
    # the memory and model time a single request can take.
    max_instances: int = 1024

    @classmethod
    def from_env(cls, **overrides) -> BatchingConfig:
        env = os.environ
        values = {
            "enabled": env.get("CLOUDML_BATCHING", "1").lower() not in ("0", "false", "off", "no"),
            "max_batch_size": int(env.get("CLOUDML_MAX_BATCH_SIZE", cls.max_batch_size)),
            "max_wait_ms": float(env.get("CLOUDML_MAX_BATCH_WAIT_MS", cls.max_wait_ms)),
            "max_queue_size": _positive(env, "CLOUDML_MAX_QUEUE_SIZE", int, cls.max_queue_size),
            "deadline_ms": _positive(env, "CLOUDML_REQUEST_DEADLINE_MS", float, cls.deadline_ms),
            "max_instances": _positive(env, "CLOUDML_MAX_INSTANCES", int, cls.max_instances),
        }
        if env.get("CLOUDML_MODEL_WORKERS"):
            values["model_workers"] = int(env["CLOUDML_MODEL_WORKERS"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _positive(env, name: str, kind: type, default):
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise ConfigError(f"{name}={raw!r} is not a positive number", hint=f"unset it for the default ({default:g}), or give a number above 0")
    return value


@dataclass(slots=True)
class _Pending:
    key: tuple
    arrays: Arrays
    size: int
    future: asyncio.Future
    queued: float
    deadline: float  # time.perf_counter() past which the request is not run
    gone: Gone | None


def _shape_key(arrays: Arrays) -> tuple:
    return tuple((name, a.shape[1:], a.dtype.str) for name, a in arrays.items())


class Batcher:
    def __init__(self, run: Callable[[Arrays], Arrays], *, config: BatchingConfig, metrics: ServingMetrics):
        self._run = run
        self.config = config
        self.metrics = metrics
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0  # batching off: requests waiting for or in a model call
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, arrays: Arrays, *, deadline: float = math.inf, gone: Gone | None = None) -> Arrays:
        """The model's outputs for `arrays` (one request's same-shape instances)."""
        if not self.config.enabled:
            return await self._pieces(arrays, deadline, gone, self._run_alone)
        self._admit()
        if len(next(iter(arrays.values()))) <= self.config.max_batch_size:
            return await self._enqueue(arrays, deadline, gone)
        return await self._pieces(arrays, deadline, gone, self._enqueue)

    async def run_all(self, groups: list[Arrays], *, deadline: float = math.inf, gone: Gone | None = None) -> list[Arrays]:
        """Outputs for several groups of one request, admitted (or refused) together and run one
        after the other, so a request of many shapes holds one place in the queue, not many."""
        run = self._run_alone if not self.config.enabled else self._enqueue
        if self.config.enabled:
            self._admit()
        results = []
        for arrays in groups:
            results.append(await self._pieces(arrays, deadline, gone, run))
            deadline = math.inf  # its model calls have started: the rest are not abandoned half-way
        return results

    async def _pieces(self, arrays: Arrays, deadline: float, gone: Gone | None, run) -> Arrays:
        size = len(next(iter(arrays.values())))
        limit = self.config.max_batch_size
        if size <= limit:
            return await run(arrays, deadline, gone)
        parts: list[Arrays] = []
        for start in range(0, size, limit):
            parts.append(await run({name: a[start:start + limit] for name, a in arrays.items()}, deadline, gone, admitted=bool(parts)))
            deadline = math.inf
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _admit(self) -> None:
        if len(self._pending) >= self.config.max_queue_size:
            self._refuse(len(self._pending))

    def _refuse(self, waiting: int):
        self.metrics.count_dropped("overloaded")
        raise Overloaded(f"the server is at capacity: {waiting} requests are waiting for the model (at most {self.config.max_queue_size}); retry shortly")

    def _enqueue(self, arrays: Arrays, deadline: float, gone: Gone | None, admitted: bool = False) -> asyncio.Future:
        if not self._workers:
            self._start()
        size = len(next(iter(arrays.values())))
        item = _Pending(_shape_key(arrays), arrays, size, asyncio.get_running_loop().create_future(), time.perf_counter(), deadline, gone)
        self._pending.append(item)
        assert self._wakeup is not None  # _start made it with the workers
        self._wakeup.set()
        return item.future

    async def _run_alone(self, arrays: Arrays, deadline: float, gone: Gone | None, admitted: bool = False) -> Arrays:
        if not admitted and self._in_flight >= self.config.max_queue_size:
            self._refuse(self._in_flight)
        self._in_flight += 1
        try:
            return await run_in_threadpool(self._unbatched, arrays, time.perf_counter(), deadline, gone)
        finally:
            self._in_flight -= 1

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.config.model_workers, thread_name_prefix="cloudml-model")
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.config.model_workers)]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []
        if self._executor:
            self._executor.shutdown(wait=False)

    def _model_call(self, arrays: Arrays) -> Arrays:
        start = time.perf_counter()
        outputs = self._run(arrays)
        self.metrics.model_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(len(next(iter(arrays.values()))))
        return outputs

    def _unbatched(self, arrays: Arrays, queued: float, deadline: float, gone: Gone | None) -> Arrays:
        now = time.perf_counter()
        error = self._unwanted(now, queued, deadline, gone)
        if error is not None:
            raise error
        self.metrics.queue_seconds.observe(now - queued)
        return self._model_call(arrays)

    def _unwanted(self, now: float, queued: float, deadline: float, gone: Gone | None) -> Exception | None:
        """Why a request should not reach the model any more, or None."""
        if gone is not None and gone():
            self.metrics.count_dropped("disconnected")
            return CallerGone("the caller went away while its request was queued")
        if now > deadline:
            self.metrics.count_dropped("deadline")
            return DeadlineExceeded(
                f"the request waited {(now - queued) * 1000:.0f} ms for the model and passed its deadline "
                f"({self.config.deadline_ms:g} ms after it arrived); retry, or send fewer requests at once"
            )
        return None

    def _take(self) -> list[_Pending]:
        """The oldest live request plus every queued one with the same shapes that fits the batch.
        Requests past their deadline or whose caller has gone are answered on the way."""
        now = time.perf_counter()
        batch: list[_Pending] = []
        total = 0
        kept: deque[_Pending] = deque()
        while self._pending:
            item = self._pending.popleft()
            if item.future.done():
                continue  # cancelled: the server is stopping
            error = self._unwanted(now, item.queued, item.deadline, item.gone)
            if error is not None:
                item.future.set_exception(error)
            elif not batch:
                batch.append(item)
                total = item.size
            elif item.key == batch[0].key and total + item.size <= self.config.max_batch_size:
                batch.append(item)
                total += item.size
            else:
                kept.append(item)
        self._pending.extendleft(reversed(kept))
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                assert self._wakeup is not None  # _start made it before this worker
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self.config.max_wait_ms / 1000 - (time.perf_counter() - self._pending[0].queued)
            if wait > 0 and sum(p.size for p in self._pending) < self.config.max_batch_size:
                await asyncio.sleep(wait)
                if not self._pending:
                    continue
            batch = self._take()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._call, batch)
            except BaseException as exc:  # never let the worker die: fail this batch, keep serving
                results = [exc] * len(batch)
            for item, result in zip(batch, results):
                if item.future.done():
                    continue  # cancelled while the model ran
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _call(self, batch: list[_Pending]) -> list[Arrays | BaseException]:
        """Runs in the model thread: merge, call once, split back in request order."""
        now = time.perf_counter()
        for item in batch:
            self.metrics.queue_seconds.observe(now - item.queued)
        if len(batch) == 1:
            return [self._guarded(batch[0].arrays)]
        merged = {name: np.concatenate([item.arrays[name] for item in batch]) for name in batch[0].arrays}
        try:
            outputs = self._model_call(merged)
        except InvalidInput:
            # Some request holds a value only the model rejects: find it by running each alone.
            return [self._guarded(item.arrays) for item in batch]
        results: list[Arrays | BaseException] = []
        offset = 0
        for item in batch:
            results.append({name: values[offset:offset + item.size] for name, values in outputs.items()})
            offset += item.size
        return results

    def _guarded(self, arrays: Arrays) -> Arrays | BaseException:
        try:
            return self._model_call(arrays)
        except Exception as exc:
            return exc
