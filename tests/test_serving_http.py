"""HTTP/1.1 on a raw socket, as clients other than httpx speak it: pipelined requests are
answered in order on one connection, and a `Connection: close` request gets its whole answer
before the server closes. (The server gathers each response into one send; these are the cases
where gathered writes could go out of order or be lost.)"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import endpoint, rows_close

pytestmark = pytest.mark.slow


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return sock


def _post(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """`count` responses (status, headers, body) read off the socket by their Content-Length."""
    buffer, responses = b"", []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} of {count} responses"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of a body"
            buffer += chunk
        responses.append((int(lines[0].split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return responses


def test_pipelined_requests_are_answered_in_order(deployed, seed_models, references):
    cnn = seed_models["cnn"]
    first, second = cnn.instances[0], cnn.instances[1 % len(cnn.instances)]
    bad = json.dumps({"instances": [[0.5] * 3]}).encode()
    with _connect(endpoint(deployed, "cnn")) as sock:
        sock.sendall(_post(json.dumps({"instances": [first]}).encode())
                     + b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"
                     + _post(bad)
                     + _post(json.dumps({"instances": [second]}).encode()))
        responses = _read_responses(sock, 4)
    assert [status for status, _, _ in responses] == [200, 200, 400, 200]
    assert rows_close(json.loads(responses[0][2])["predictions"], [references["cnn"][0]])
    assert "784" in json.loads(responses[2][2])["error"]
    expected = cnn.reference([second])
    assert rows_close(json.loads(responses[3][2])["predictions"], expected)


def test_connection_close_gets_the_whole_answer_then_eof(deployed, seed_models, references):
    cnn = seed_models["cnn"]
    with _connect(endpoint(deployed, "cnn")) as sock:
        sock.sendall(_post(json.dumps({"instances": cnn.instances}).encode(), close=True))
        [(status, headers, body)] = _read_responses(sock, 1)
        rest = sock.recv(65536)
    assert status == 200 and headers.get("connection") == "close"
    assert rest == b"", "the server should close the connection after the answer"
    assert rows_close(json.loads(body)["predictions"], references["cnn"])
    assert np.asarray(json.loads(body)["predictions"]).shape[0] == len(cnn.instances)
