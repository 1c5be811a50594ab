"""A small JSON-over-HTTP client on the standard library (fast to import, no extra dependency).

Speaks TCP or a Unix socket; retries once when a kept-alive connection was closed under it,
which happens when a local server is swapped for its replacement.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class HTTPResult:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return {"error": self.body.decode(errors="replace")[:500]}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def request(
    method: str,
    url: str,
    *,
    payload: Any = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    unix_socket: str | None = None,
) -> HTTPResult:
    """One request; raises OSError (ConnectionRefusedError, ...) when nothing answers, or when
    what answers does not speak HTTP (ConnectionError): to every caller that is the same."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    send_headers = {"Accept": "application/json", **(headers or {})}
    if payload is not None:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        send_headers.setdefault("Content-Type", "application/json")
    for attempt in (1, 2):
        if unix_socket:
            conn: http.client.HTTPConnection = _UnixConnection(unix_socket, timeout)
        elif parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=send_headers)
            response = conn.getresponse()
            return HTTPResult(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
            if attempt == 2:
                raise
        except http.client.HTTPException as exc:  # a malformed status line, a body cut short, ...
            raise ConnectionError(f"no valid HTTP answer from {url}: {exc!r}") from None
        finally:
            conn.close()
    raise AssertionError("unreachable")
