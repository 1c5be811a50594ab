"""The data plane: one predict call, whatever contract a request came in by.

Every protocol adapter (SageMaker, Vertex AI, Azure ML, TF Serving REST) decodes its request
into a `PredictRequest` and renders what `DataPlane.predict` returns; validation against the
signature, batching, deadlines and the model live below this line and know no protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloudml.serving.batching import Batcher, BatchingConfig
from cloudml.serving.errors import ModelNotFound, NotReady, PayloadTooLarge
from cloudml.serving.memory import MemoryReturner
from cloudml.serving.metrics import ServingMetrics
from cloudml.serving.model import ServedModel
from cloudml.serving.requests import batch_from_columns, batch_from_instances

# Outputs by name, batch first: an array, or a list of per-instance arrays when instances of
# different input shapes (sequences) gave differently shaped outputs.
Outputs = dict[str, Any]


@dataclass(slots=True)
class PredictRequest:
    """One prediction request, decoded from its contract's wire format."""

    inputs: Any  # rows: a list of instances; columnar: TF Serving's `"inputs"` value
    columnar: bool = False
    received: float | None = None  # time.perf_counter() when it arrived (the deadline counts from it); None: now
    gone: Callable[[], bool] | None = None  # whether the caller has gone away (None: cannot tell)


class DataPlane:
    def __init__(self, model: ServedModel, *, batching: BatchingConfig, metrics: ServingMetrics):
        self.model = model
        self.signature = model.signature
        self.metrics = metrics
        self.batcher = Batcher(model.run, config=batching, metrics=metrics)
        self._deadline_s = batching.deadline_ms / 1000
        self.max_instances = batching.max_instances
        self.memory = MemoryReturner()

    @property
    def ready(self) -> bool:
        return self.model.ready

    def check_model(self, name: str | None, version: str | None) -> None:
        """Refuse a request addressed to a model or version other than the one served."""
        model = self.model
        if name is not None and name != model.name:
            raise ModelNotFound(f"model {name!r} is not served here; this server serves {model.name!r}")
        if version is not None and version != str(model.version):
            raise ModelNotFound(f"version {version} of {model.name!r} is not served here; version {model.version} is")

    async def predict(self, request: PredictRequest) -> Outputs:
        if not self.model.ready:
            raise NotReady("the model is still loading; retry shortly")
        deadline = (time.perf_counter() if request.received is None else request.received) + self._deadline_s
        if request.columnar:
            arrays = batch_from_columns(request.inputs, self.signature)
            if len(next(iter(arrays.values()))) > self.max_instances:
                self._too_many(len(next(iter(arrays.values()))))
            return await self.batcher.run(arrays, deadline=deadline, gone=request.gone)
        if len(request.inputs) > self.max_instances:
            self._too_many(len(request.inputs))
        batch = batch_from_instances(request.inputs, self.signature)
        if len(batch.groups) == 1:
            return await self.batcher.run(batch.groups[0][1], deadline=deadline, gone=request.gone)
        results = await self.batcher.run_all([arrays for _, arrays in batch.groups], deadline=deadline, gone=request.gone)
        rows: dict[str, list[Any]] = {name: [None] * batch.size for name in results[0]}
        for (indices, _), outputs in zip(batch.groups, results):
            for name, values in outputs.items():
                for row, index in enumerate(indices):
                    rows[name][index] = values[row]
        return {name: np.stack(r) if len({np.shape(v) for v in r}) == 1 else r for name, r in rows.items()}

    def _too_many(self, count: int):
        raise PayloadTooLarge(
            f"the request holds {count} instances; this server takes at most {self.max_instances} per request "
            "(CLOUDML_MAX_INSTANCES): send them in several requests"
        )

    async def close(self) -> None:
        await self.batcher.close()

