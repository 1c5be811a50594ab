"""A real `cloudml serve` on 127.0.0.1 against what attack runs sent it: malformed HTTP, huge
or endless heads and bodies, idle and slow connections by the thousand, huge requests, and a
bounded fuzz run. Bad input must never get a 5xx or a dropped connection, idle or slow clients
must not starve real ones, and memory must stay bounded. All traffic is loopback, every loop is
bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from test_serving_errors import REPO, free_port, stop, wait_for_exit_or_ping

pytestmark = pytest.mark.slow

MAX_INSTANCES = 1000
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 3
DESCRIPTORS = 1024  # the server's descriptor limit, as in the report (soft = hard)


def _doubling_savedmodel(path: Path) -> None:
    """y = 2x for float32 input of ANY rank: nothing is checked before TensorFlow sees it."""
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0}

    module = Double()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _limit_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def start_limited(model: Path, tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudml", "serve", str(model), "--port", str(port), "--package-dir", str(tmp / "package"), "--workers", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, preexec_fn=_limit_descriptors,
        )
    return proc, f"http://127.0.0.1:{port}", log_path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abuse")
    _doubling_savedmodel(tmp / "double")
    env = {"CLOUDML_MAX_INSTANCES": str(MAX_INSTANCES), "CLOUDML_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
           "CLOUDML_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    proc, url, log = start_limited(tmp / "double", tmp, env)
    try:
        assert wait_for_exit_or_ping(proc, url, timeout=180) == 200, log.read_text()[-3000:]
        yield {"url": url, "proc": proc, "log": log, "port": urlsplit(url).port}
    finally:
        stop(proc)


def rss_mib(pid: int) -> float:
    return int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE).group(1)) / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def assert_serves(url: str) -> None:
    response = httpx.post(url + "/invocations", json={"instances": [[1.0, 2.5]]}, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[2.0, 5.0]]}


def raw(port: int, data: bytes, *, timeout: float = 10) -> tuple[int | None, dict, bytes]:
    """Send `data` on a fresh connection; the status, headers and body of the answer (None: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int | None, dict, bytes]:
    buffer = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                if length and len(rest) >= int(length.group(1)):
                    break
    except ConnectionResetError:
        pass
    if not buffer:
        return None, {}, b""
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_json_error(answer, status: int, *fragments: str) -> None:
    got, headers, body = answer
    assert got == status, (got, headers, body[:300])
    assert headers.get("content-type") == "application/json", headers
    error = json.loads(body)["error"]
    for fragment in fragments:
        assert fragment in error, error


# --- malformed HTTP and the access log --------------------------------------------------------------
MALFORMED = {
    "bad-content-length": b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{}",
    "content-length-and-chunked": b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk-size": b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "garbage-request-line": b"\x16\x03\x01 hello there\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_http_gets_the_contracts_json_400(server, name):
    assert_json_error(raw(server["port"], MALFORMED[name]), 400, "not valid HTTP/1.1")
    assert_serves(server["url"])


def test_a_percent_encoded_newline_in_the_path_cannot_forge_an_access_log_line(server):
    response = httpx.get(server["url"] + "/x%0a2026-01-01 00:00:00,000 INFO cloudml.serving.access: 1.2.3.4 %22GET /admin%22 200 0.1ms", trust_env=False)
    assert response.status_code == 404
    time.sleep(0.5)  # the access log is written every 0.1 s
    lines = server["log"].read_text(errors="replace").splitlines()
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in lines), "a forged line reached the log"
    assert any("/x\\n2026-01-01" in line for line in lines)


# --- heads and bodies: size and time ------------------------------------------------------------------
def test_oversized_headers_get_431(server):
    big = b"X-Big: " + b"a" * 200_000 + b"\r\n"
    answer = raw(server["port"], b"GET /ping HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n")
    assert_json_error(answer, 431, "exceed 65536 bytes", "CLOUDML_MAX_HEADER_BYTES")
    assert_serves(server["url"])


def test_unfinished_huge_headers_do_not_hold_memory(server):
    """20 connections each sending 32 MB of a head that never ends: each is cut off at the limit."""
    pid = server["proc"].pid
    before = rss_mib(pid)
    socks = [socket.create_connection(("127.0.0.1", server["port"]), timeout=10) for _ in range(20)]
    statuses = []
    try:
        for sock in socks:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\nX-Big: ")
        chunk = b"a" * (1 << 20)
        for sock in socks:
            sent = 0
            try:
                while sent < 32 << 20:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
            assert sent < 32 << 20, "the server kept reading a head past its limit"
            statuses.append(read_answer(sock)[0])
        growth = rss_mib(pid) - before
    finally:
        for sock in socks:
            sock.close()
    assert set(statuses) <= {431, None} and 431 in statuses, statuses
    assert growth < 50, f"RSS grew {growth:.0f} MiB"
    assert_serves(server["url"])


def test_a_client_that_sends_nothing_is_disconnected_after_the_header_timeout(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=HEADER_TIMEOUT_S + 5) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert HEADER_TIMEOUT_S - 0.5 <= time.monotonic() - start <= HEADER_TIMEOUT_S + 2.5


def test_slow_headers_and_slow_bodies_get_408(server):
    port = server["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as slow_head:
        slow_head.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n")
        for _ in range(HEADER_TIMEOUT_S * 4):  # a header line every 0.5 s: never done in time
            time.sleep(0.5)
            try:
                slow_head.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert_json_error(read_answer(slow_head), 408, "request headers did not arrive within 2 s")
    with socket.create_connection(("127.0.0.1", port), timeout=15) as slow_body:
        slow_body.sendall(b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        assert_json_error(read_answer(slow_body), 408, "request body did not arrive within 3 s")
    assert_serves(server["url"])


def test_100_mb_bodies_get_413_at_once_declared_or_chunked(server):
    port = server["port"]
    start = time.monotonic()
    declared = raw(port, b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
    assert_json_error(declared, 413, "exceeds the limit")
    assert time.monotonic() - start < 5
    pid = server["proc"].pid
    before = rss_mib(pid)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % (1 << 20) + b"1" * (1 << 20) + b"\r\n"
        sent, answered_after, deadline = 0, None, time.monotonic() + BODY_TIMEOUT_S + 10
        try:
            while time.monotonic() < deadline:  # a body that never ends, until the server hangs up
                sock.sendall(chunk)
                sent += 1
                if answered_after is None and select.select([sock], [], [], 0)[0]:
                    answered_after = sent
                    answer = read_answer(sock)
                time.sleep(0.02)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
    assert answered_after is not None and answered_after <= 12, f"answered after {answered_after} MiB"
    assert_json_error(answer, 413, "exceeds the limit")
    assert time.monotonic() < deadline, "the server kept reading an endless body"
    assert rss_mib(pid) - before < 50
    assert_serves(server["url"])


def test_more_instances_than_the_limit_get_413_that_says_it(server):
    response = httpx.post(server["url"] + "/invocations", json={"instances": [[0.0]] * (MAX_INSTANCES + 1)}, trust_env=False, timeout=30)
    assert response.status_code == 413
    assert f"at most {MAX_INSTANCES} per request" in response.json()["error"] and "CLOUDML_MAX_INSTANCES" in response.json()["error"]
    response = httpx.post(server["url"] + "/invocations", json={"instances": [[1.0]] * MAX_INSTANCES}, trust_env=False, timeout=30)
    assert response.status_code == 200 and response.json()["predictions"] == [[2.0]] * MAX_INSTANCES


def test_an_instance_of_rank_64_to_a_model_of_unknown_rank_is_a_400(server):
    deep = 1.0
    for _ in range(64):
        deep = [deep]
    response = httpx.post(server["url"] + "/invocations", json={"instances": [deep]}, trust_env=False, timeout=30)
    assert response.status_code == 400 and "at most 63" in response.json()["error"], response.text
    assert_serves(server["url"])


# --- load: idle connections by the thousand, huge requests, and real clients ----------------------------
def _real_client(url: str, count: int) -> list[int]:
    statuses = []
    with httpx.Client(timeout=15, trust_env=False) as client:
        for i in range(count):
            response = client.post(url + "/invocations", json={"instances": [[float(i)]]})
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.json() == {"predictions": [[2.0 * i]]}
    return statuses


async def _huge(url: str, count: int) -> list[int]:
    body = json.dumps({"instances": [[0.5] * 784] * MAX_INSTANCES}).encode()  # ~4 MB, 1000 instances
    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
        responses = await asyncio.gather(*(client.post(url + "/invocations", content=body, headers={"Content-Type": "application/json"}) for _ in range(count)))
    return [r.status_code for r in responses]


def test_idle_connections_and_huge_requests_do_not_starve_real_clients(server):
    """1,100 idle connections (more than the server's 1,024 descriptors), then six concurrent
    1,000-instance requests: real clients keep getting answers, RSS stays within 400 MiB of
    where it started and comes back to within 150 MiB, and the descriptors are given back."""
    from concurrent.futures import ThreadPoolExecutor

    url, port, pid = server["url"], server["port"], server["proc"].pid
    rss_before, fds_before = rss_mib(pid), open_fds(pid)
    idle = []
    try:
        for _ in range(1100):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        assert len(idle) == 1100
        assert open_fds(pid) < DESCRIPTORS
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            real = [pool.submit(_real_client, url, 25) for _ in range(3)]
            huge = asyncio.run(_huge(url, 6))
            statuses = [s for future in real for s in future.result(timeout=120)]
        elapsed = time.monotonic() - start
        peak = rss_mib(pid) - rss_before
    finally:
        for sock in idle:
            sock.close()
    assert statuses == [200] * 75, statuses
    assert set(huge) <= {200, 503} and 200 in huge, huge
    assert elapsed < 90
    assert peak < 400, f"RSS grew {peak:.0f} MiB"
    time.sleep(2)  # the memory is given back shortly after the burst
    assert rss_mib(pid) - rss_before < 150, f"RSS stayed {rss_mib(pid) - rss_before:.0f} MiB above where it started"
    deadline = time.monotonic() + 10
    while open_fds(pid) > fds_before + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(pid) <= fds_before + 5
    assert_serves(url)


# --- a bounded fuzz run of every contract route -----------------------------------------------------------
ROUTES = [("POST", "/invocations"), ("POST", "/predict"), ("POST", "/score"), ("POST", "/v1/models/double:predict"),
          ("POST", "/v1/models/double/versions/1:predict"), ("GET", "/ping"), ("GET", "/health"), ("GET", "/ready"),
          ("GET", "/v1/models/double"), ("GET", "/v1/models/double/metadata"), ("GET", "/metrics")]
CONTENT_TYPES = ["application/json", "application/jsonlines", "text/csv", "text/csv; header=present", "text/plain", "", "application/json; charset=utf-8"]


def test_fuzzed_requests_never_get_a_5xx_or_a_dropped_connection(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-2**70, 2**70) | st.text(max_size=8),
        lambda children: st.lists(children, max_size=6) | st.dictionaries(st.sampled_from(["instances", "inputs", "x", "data", "signature_name",
                                                                                           "b64"]) | st.text(max_size=4), children, max_size=3),
        max_leaves=40,
    )
    json_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "application/jsonlines"])
    csv_types = st.sampled_from(["text/csv", "text/csv; header=present"])
    cells = st.sampled_from(["1", "-2.5", "1e3", "nan", "inf", "1_0", '"a"', "", " 3 ", "0x1", "7" * 140_000])
    typed_bodies = st.one_of(  # (content type, body)
        st.tuples(json_types, json_values.map(lambda v: json.dumps(v).encode())),
        st.tuples(json_types, st.lists(json_values, min_size=2, max_size=4).map(lambda vs: b"\n".join(json.dumps(v).encode() for v in vs))),
        st.tuples(json_types, st.integers(0, 70).map(lambda depth: json.dumps({"instances": [[1.0]]}).encode().replace(b"1.0",
                                                                                                                       b"[" * depth + b"1.0" + b"]" * depth))),
        st.tuples(csv_types, st.tuples(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=4), st.sampled_from(["\n", "\r\n", "\r"]))
                  .map(lambda rows_end: rows_end[1].join(",".join(r) for r in rows_end[0]).encode())),
        st.tuples(st.sampled_from(CONTENT_TYPES), st.binary(max_size=200)),
    )
    paths = st.one_of(st.just(("POST", "/invocations")), st.sampled_from(ROUTES),
                      st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.text(alphabet="/abcdv1:%0aZ.?#", max_size=20).map(lambda p: "/v" + p)))
    client = httpx.Client(base_url=server["url"], timeout=15, trust_env=False)
    seen: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(route=paths, typed_body=typed_bodies)
    def one(route, typed_body):
        method, path = route
        content_type, body = typed_body
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = client.request(method, path, content=body if method != "GET" else None, headers=headers)
        except httpx.TransportError as exc:
            raise AssertionError(f"{method} {path} {content_type!r} {body[:200]!r}: connection dropped ({exc!r})") from None
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500 or response.status_code == 503, (
            f"{method} {path} {content_type!r} {body[:200]!r} -> {response.status_code} {response.text[:300]}")
        assert response.headers.get("content-type", "").startswith(("application/json", "text/plain; version=0.0.4"))

    start = time.monotonic()
    try:
        one()
    finally:
        client.close()
    assert time.monotonic() - start < 240
    assert seen.get(200) and seen.get(400), seen  # it reached the model and the validation both
    assert_serves(server["url"])


# --- a long request does not starve short ones ----------------------------------------------------------
def _per_instance_slow_savedmodel(path: Path) -> None:
    """y = 2x, after sleeping 50 ms per instance in the graph: a model whose time grows with the batch."""
    import tensorflow as tf

    try:
        from tensorflow.python.data.experimental.ops.testing import sleep
    except ImportError:  # private API: without it there is no slow model
        pytest.skip("this TensorFlow has no tf.data sleep transformation")

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def serve(self, x):
            rows = tf.cast(tf.shape(x)[0], tf.int64)
            waited = tf.data.Dataset.range(rows).apply(sleep(50_000)).reduce(tf.constant(0, tf.int64), lambda total, v: total + 0 * v)
            return {"y": x * 2.0 + tf.cast(waited, tf.float32)}

    module = Slow()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_a_long_request_does_not_starve_short_ones(tmp_path):
    _per_instance_slow_savedmodel(tmp_path / "slow")
    proc, url, log = start_limited(tmp_path / "slow", tmp_path, {"CLOUDML_MAX_BATCH_SIZE": "4"})
    try:
        assert wait_for_exit_or_ping(proc, url, timeout=180) == 200, log.read_text()[-3000:]

        async def main():
            async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
                big = asyncio.create_task(client.post(url + "/invocations", json={"instances": [[float(i)] for i in range(60)]}))  # ~3 s of model time
                await asyncio.sleep(0.5)
                start = time.monotonic()
                small = await client.post(url + "/invocations", json={"instances": [[7.0]]})
                small_s = time.monotonic() - start
                return await big, small, small_s, time.monotonic()

        big, small, small_s, _ = asyncio.run(main())
    finally:
        stop(proc)
    assert small.status_code == 200 and small.json() == {"predictions": [[14.0]]}
    assert big.status_code == 200 and big.json() == {"predictions": [[2.0 * i] for i in range(60)]}
    assert small_s < 1.5, f"the short request waited {small_s:.1f} s behind the long one"
