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
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
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
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
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
