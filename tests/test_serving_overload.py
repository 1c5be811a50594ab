"""Overload against a real server: more concurrent requests than the queue holds are refused at
once with 503 and Retry-After, memory stays bounded, and the server serves correctly afterwards;
a request whose client hung up while it was queued never reaches the model."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from test_serving_errors import start_serve, stop, wait_for_exit_or_ping

pytestmark = pytest.mark.slow

QUEUE = 4
WIDTH = 50_000  # floats per instance: a ~200 KB body, so queued requests would show in memory


def _slow_savedmodel(path: Path) -> None:
    """y = 2x, after sleeping 200 ms in the graph (any batch), so a queue forms behind each call."""
    import tensorflow as tf

    try:
        from tensorflow.python.data.experimental.ops.testing import sleep
    except ImportError:  # private API: without it there is no slow model to queue behind
        pytest.skip("this TensorFlow has no tf.data sleep transformation")

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def serve(self, x):
            waited = tf.data.Dataset.range(1).apply(sleep(200_000)).reduce(tf.constant(0, tf.int64), lambda total, v: total + v)
            return {"y": x * 2.0 + tf.cast(waited, tf.float32)}

    module = Slow()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow-server")
    _slow_savedmodel(tmp / "slow")
    proc, url, log = start_serve(tmp / "slow", tmp, "--workers", "1", "--max-batch-size", "1", "--max-queue-size", str(QUEUE))
    try:
        assert wait_for_exit_or_ping(proc, url, timeout=180) == 200, log.read_text()[-3000:]
        yield {"url": url, "proc": proc, "log": log}
    finally:
        stop(proc)


def _memory_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


async def _flood(url: str, body: bytes, count: int, connections: int) -> list[httpx.Response]:
    # A connection per request: the server closes idle kept-alive ones after 5 s, and a client
    # reusing one just then gets an error that says nothing about the server's queue.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:
        headers = {"Content-Type": "application/json"}
        return await asyncio.gather(*(client.post(url + "/invocations", content=body, headers=headers) for _ in range(count)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_more_requests_than_the_queue_holds_get_503_with_retry_after_and_memory_stays_bounded(slow_server):
    url, pid = slow_server["url"], slow_server["proc"].pid
    body = json.dumps({"instances": [[0.5] * WIDTH]}).encode()
    small = {"instances": [[1.0, 2.0, 3.0]]}
    assert httpx.post(url + "/invocations", json=small, timeout=30, trust_env=False).json() == {"predictions": [[2.0, 4.0, 6.0]]}
    asyncio.run(_flood(url, body, 8, 8))  # the big-body path warmed up once: its buffers are not growth
    refused_before = _metric(url, 'cloudml_requests_dropped_total{reason="overloaded"}')
    rss_before = _memory_kib(pid, "VmRSS")

    count = 300  # 300 x ~200 KB bodies: ~60 MB the server would hold if it queued them all
    responses = asyncio.run(_flood(url, body, count, 64))

    growth_mib = (_memory_kib(pid, "VmHWM") - rss_before) / 1024
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) >= count // 2, f"only {len(refused)} of {count} refused with a queue of {QUEUE}"
    for response in refused:
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/json" and "at capacity" in response.json()["error"]
    for response in responses:
        if response.status_code == 200:
            assert response.json()["predictions"] == [[1.0] * WIDTH]
    assert _metric(url, 'cloudml_requests_dropped_total{reason="overloaded"}') - refused_before == len(refused)
    assert growth_mib < 60, f"the server's peak memory grew by {growth_mib:.0f} MiB under the flood"
    # And it serves correctly afterwards.
    after = httpx.post(url + "/invocations", json=small, timeout=30, trust_env=False)
    assert after.status_code == 200 and after.json() == {"predictions": [[2.0, 4.0, 6.0]]}


def _send_predict(url: str, value: float) -> socket.socket:
    """A connection that has sent `{"instances": [[value]]}` (sent in full when this returns)."""
    parts = urlsplit(url)
    body = json.dumps({"instances": [[value]]}).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(re.search(rb"content-length: (\d+)", data, re.IGNORECASE).group(1)):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the whole answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_request_whose_client_hung_up_is_not_computed(slow_server):
    url = slow_server["url"]
    calls_before = _metric(url, "cloudml_batch_size_count")
    dropped_before = _metric(url, 'cloudml_requests_dropped_total{reason="disconnected"}')
    with _send_predict(url, 1.0) as first:
        time.sleep(0.1)  # the first request is in the model now, for 200 ms or more
        with _send_predict(url, 5.0):
            time.sleep(0.05)  # queued behind the first; then its client hangs up
        with _send_predict(url, 3.0) as last:
            assert _answer(first) == (200, {"predictions": [[2.0]]})
            assert _answer(last) == (200, {"predictions": [[6.0]]})
    assert _metric(url, "cloudml_batch_size_count") - calls_before == 2, "the hung-up request reached the model"
    assert _metric(url, 'cloudml_requests_dropped_total{reason="disconnected"}') - dropped_before == 1
