"""Adaptive batching: concurrent requests share model calls, outputs stay exactly per request,
and one bad request never fails the others."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import numpy as np
import pytest

from cloudml.serving.batching import Batcher, BatchingConfig
from cloudml.serving.metrics import ServingMetrics
from cloudml.serving.requests import BadRequest


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


async def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(client.post(url, json=body) for body in bodies))


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["autoencoder", "cnn", "lstm"])
def test_concurrent_single_instance_requests_are_batched_and_match_unbatched_outputs(seed_models, deployed, model_name):
    model = seed_models[model_name]
    url = deployed[model_name]["endpoint_url"]
    instances = model.instances * 22  # 66 requests, one instance each; LSTM lengths differ
    expected = model.reference(instances)
    before = httpx.get(url + "/metrics", trust_env=False).text
    responses = asyncio.run(_concurrent(url + "/invocations", [{"instances": [x]} for x in instances]))
    after = httpx.get(url + "/metrics", trust_env=False).text
    assert all(r.status_code == 200 for r in responses)
    for response, want in zip(responses, expected):
        assert np.allclose(response.json()["predictions"][0], want, atol=1e-5)
    calls = _metric(after, "cloudml_batch_size_count") - _metric(before, "cloudml_batch_size_count")
    samples = _metric(after, "cloudml_batch_size_sum") - _metric(before, "cloudml_batch_size_sum")
    assert samples == len(instances)
    assert calls < len(instances), "no two requests ever shared a model call"


@pytest.mark.slow
def test_a_bad_request_fails_alone_while_its_batch_mates_succeed(seed_models, deployed):
    lstm = seed_models["lstm"]
    url = deployed["lstm"]["endpoint_url"] + "/invocations"
    good = [{"instances": [x]} for x in lstm.instances * 10]
    out_of_vocabulary = {"instances": [[1, 2, 10**6]]}  # valid int64, only the model can refuse it
    wrong_dtype = {"instances": [[0.5, 1.5]]}
    bodies = good[:10] + [out_of_vocabulary] + good[10:20] + [wrong_dtype] + good[20:]
    responses = asyncio.run(_concurrent(url, bodies))
    expected = lstm.reference(lstm.instances * 10)
    statuses = [r.status_code for r in responses]
    assert statuses[10] == 400 and "holds 1000000 at [0, 2], outside [-10000, 10000)" in responses[10].json()["error"]
    assert statuses[21] == 400 and "integers" in responses[21].json()["error"]
    good_responses = [r for i, r in enumerate(responses) if i not in (10, 21)]
    assert all(r.status_code == 200 for r in good_responses)
    for response, want in zip(good_responses, expected):
        assert np.allclose(response.json()["predictions"][0], want, atol=1e-5)


def _slow_double(calls: list[int]):
    def run(arrays):
        calls.append(len(arrays["x"]))
        time.sleep(0.02)  # a model call long enough for a queue to form behind it
        if np.any(arrays["x"] < 0):
            raise BadRequest("negative values are refused")
        return {"y": arrays["x"] * 2}
    return run


def _run_batcher(config: BatchingConfig, requests: list[np.ndarray], calls: list[int]):
    batcher = Batcher(_slow_double(calls), config=config, metrics=ServingMetrics())

    async def main():
        async def one(x):
            try:
                return (await batcher.run({"x": x}))["y"]
            except BadRequest as exc:
                return exc

        try:
            return await asyncio.gather(*(one(x) for x in requests))
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_batcher_merges_splits_in_order_and_respects_the_size_limit():
    requests = [np.full((1, 3), i, dtype=np.float32) for i in range(20)] + [np.full((2, 3), 99, dtype=np.float32)]
    calls: list[int] = []
    results = _run_batcher(BatchingConfig(max_batch_size=8, model_workers=1), requests, calls)
    for request, result in zip(requests, results):
        assert np.array_equal(result, request * 2)
    assert sum(calls) == 22 and max(calls) <= 8 and len(calls) < len(requests)


def test_batcher_groups_only_same_shaped_requests():
    requests = [np.ones((1, n), dtype=np.float32) * n for n in (3, 5, 3, 5, 7, 3)]
    calls: list[int] = []
    results = _run_batcher(BatchingConfig(max_batch_size=64, model_workers=1), requests, calls)
    for request, result in zip(requests, results):
        assert result.shape == request.shape and np.array_equal(result, request * 2)


def test_batcher_isolates_a_request_the_model_rejects():
    requests = [np.full((1, 2), i, dtype=np.float32) for i in range(6)]
    requests[3] = np.full((1, 2), -1, dtype=np.float32)
    calls: list[int] = []
    results = _run_batcher(BatchingConfig(max_batch_size=64, model_workers=1), requests, calls)
    assert isinstance(results[3], BadRequest)
    for i in (0, 1, 2, 4, 5):
        assert np.array_equal(results[i], requests[i] * 2)


def test_batching_disabled_runs_every_request_alone():
    requests = [np.full((1, 2), i, dtype=np.float32) for i in range(6)]
    calls: list[int] = []
    results = _run_batcher(BatchingConfig(enabled=False), requests, calls)
    assert calls == [1] * 6
    assert all(np.array_equal(r, x * 2) for r, x in zip(results, requests))
