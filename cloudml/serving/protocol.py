"""uvicorn's HTTP protocol (httptools), with each response leaving in one send.

uvicorn writes a response's status line and headers, then its body, as two writes, and with
TCP_NODELAY on that is two system calls and two packets per response. Writes made in the same
pass of the event loop are gathered here and go out together at the end of it: one send per
response (or fewer, when several responses on a connection are ready together). Measured at 32
clients on two cores (seed CNN, wrk): ~5% more requests/s with the model, unchanged with the
no-op model (the saved system calls matter where TensorFlow competes for the cores).

It also tells the app, through the request scope, whether a request's connection has gone
(`CLIENT_GONE`), so the batcher can drop the requests of clients that left instead of computing
them: uvicorn itself only says so to an app that waits on `receive()`.

And it holds the line against clients that would starve the others (all limits in
`ConnectionLimits`, set from the environment):

* malformed HTTP (a bad Content-Length, both Content-Length and Transfer-Encoding, a bad chunk
  size, a garbage request line) gets the contracts' JSON 400, not uvicorn's plain text;
* a request head (request line and headers) over `max_header_bytes` gets 431 and the
  connection is closed, whether or not the head ever ends, so held memory stays bounded;
* a head must arrive within `header_timeout_s` of the connection opening (or of its first
  byte, on a kept-alive connection), a body within `body_timeout_s` of its head: 408, closed;
* past `max_connections` open connections, a new one displaces the oldest connection that has
  not sent a whole request head (idle or slow clients), or is closed if there is none, so idle
  connections cannot use up the descriptors a real client needs.

The timeouts are checked by one sweep a second over the open connections (`Watchdog`), so the
request path pays for none of it but two counters.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, cast

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cloudml.serving.http.request import CLIENT_GONE

log = logging.getLogger("cloudml.serving")


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 2048
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> ConnectionLimits:
        from cloudml.serving.batching import _positive  # one parser for every CLOUDML_* number

        env = os.environ
        return cls(
            max_connections=_positive(env, "CLOUDML_MAX_CONNECTIONS", int, cls.max_connections),
            max_header_bytes=_positive(env, "CLOUDML_MAX_HEADER_BYTES", int, cls.max_header_bytes),
            header_timeout_s=_positive(env, "CLOUDML_HEADER_TIMEOUT_S", float, cls.header_timeout_s),
            body_timeout_s=_positive(env, "CLOUDML_BODY_TIMEOUT_S", float, cls.body_timeout_s),
        )

    def within(self, descriptors: int) -> ConnectionLimits:
        """Capped below a descriptor limit, leaving room for the model's files, pipes and the
        listening sockets (an accept that fails for want of a descriptor stalls every client)."""
        return replace(self, max_connections=max(1, min(self.max_connections, descriptors - max(64, descriptors // 8))))


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (no privilege needed); the limit in force."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _error_bytes(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
                     str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body])


class _Refuse(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class CoalescingTransport:
    """Wraps a transport: `write` buffers until the current loop pass ends, everything else
    is the wrapped transport's (after flushing, where order matters)."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class Watchdog:
    """Once a second: close the connections whose head or body is overdue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set, limits: ConnectionLimits):
        self.loop, self.connections, self.limits = loop, connections, limits
        self.tick = 0
        self.displaced = 0  # connections closed to stay under the cap, since the last sweep
        loop.call_later(1.0, self.sweep)

    def sweep(self) -> None:
        self.tick += 1
        tick, limits = self.tick, self.limits
        if self.displaced:
            log.warning("over %d open connections: closed %d idle or new one(s) in the last second (CLOUDML_MAX_CONNECTIONS)",
                        limits.max_connections, self.displaced)
            self.displaced = 0
        for conn in list(self.connections):
            if not isinstance(conn, CoalescingHttpToolsProtocol) or conn.transport is None or conn.transport.is_closing():
                continue
            cycle = conn.cycle
            key: object  # the scope or cycle being timed (None: no request yet)
            if cycle is None or cycle.scope is not conn.scope:
                phase, key, timeout, what = 1, conn.scope, limits.header_timeout_s, "request headers"
            elif not cycle.more_body or (cycle.response_started and not cycle.response_complete):
                # Being answered, or idle between requests (uvicorn's keep-alive timeout).
                conn._watch_phase, conn._watch_key, conn._watch_since = 0, cycle, tick
                continue
            elif cycle.response_complete:
                # Answered before its body was read (a 413, say): the rest of the body is read
                # and dropped, for as long as a body may take, then the connection is closed.
                phase, key, timeout, what = 3, cycle, limits.body_timeout_s, ""
            else:
                phase, key, timeout, what = 2, cycle, limits.body_timeout_s, "request body"
            if key is not conn._watch_key or phase != conn._watch_phase:
                conn._watch_phase, conn._watch_key, conn._watch_since = phase, key, tick
            elif tick - conn._watch_since > timeout:  # ticks count whole seconds: past it, within 1 s
                if key is None or phase == 3:  # nothing asked, or already answered: nothing to say
                    conn.transport.close()
                else:
                    conn.refuse(408, f"the {what} did not arrive within {timeout:g} s; send the whole request at once")
        self.loop.call_later(1.0, self.sweep)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()  # set per server by `configured`
    watchdog: Watchdog | None = None
    _opened = itertools.count()
    # Set per connection by connection_made:
    _watch_key: object  # what the watchdog times, compared by identity only
    _extensions: dict[str, Any]  # ASGI types extension values as dicts; CLIENT_GONE's is a callable

    @classmethod
    def configured(cls, limits: ConnectionLimits) -> type[CoalescingHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"limits": limits, "watchdog": None})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Flow control and the peer addresses keep the real transport; responses go through this.
        # A duck-typed Transport: what it does not define, it forwards to the real one.
        self.transport = cast(asyncio.Transport, CoalescingTransport(transport, self.loop))
        # A transport starts closing as soon as the peer's end of file or a reset is read.
        self._client_gone = transport.is_closing
        self._extensions = {CLIENT_GONE: self._client_gone}
        self._in_head, self._chunk, self._head_upper, self._head_lower = False, 0, 0, 0
        self._order = next(self._opened)
        cls = type(self)
        if cls.watchdog is None or cls.watchdog.loop is not self.loop:
            cls.watchdog = Watchdog(self.loop, self.connections, self.limits)
        self._watch_phase, self._watch_key, self._watch_since = 1, None, cls.watchdog.tick
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        """Over the cap: close the oldest connection without a whole request head, else this one."""
        idle = [c for c in self.connections if c is not self and isinstance(c, CoalescingHttpToolsProtocol)
                and (c.cycle is None or c.cycle.response_complete) and not c.transport.is_closing()]
        victim = min(idle, key=lambda c: c._order, default=self)
        assert self.watchdog is not None  # connection_made set it
        self.watchdog.displaced += 1  # logged by the next sweep: one line a second, not one per connection
        victim.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._chunk = size = len(data)
        if self._in_head:
            self._head_lower += size  # the head began before this chunk: all of it is head
            self._head_upper += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except Exception as exc:  # httptools.HttpParserError, or a callback's (as its context)
            refusal = exc.__context__ if isinstance(exc.__context__, _Refuse) else exc if isinstance(exc, _Refuse) else None
            if refusal is not None:
                self.refuse(refusal.status, refusal.message)
            else:
                self.refuse(400, f"the request is not valid HTTP/1.1 ({type(exc).__name__}: {exc}); check Content-Length, "
                                 "Transfer-Encoding and the request line")
            return
        if self._in_head and self._head_lower > self.limits.max_header_bytes:
            self.refuse(431, self._too_big())

    def _too_big(self) -> str:
        return f"the request line and headers exceed {self.limits.max_header_bytes} bytes (CLOUDML_MAX_HEADER_BYTES)"

    def refuse(self, status: int, message: str) -> None:
        """Answer `status` with the contracts' JSON error and close the connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # its own answer, if it makes one, is not sent
            transport.write(_error_bytes(status, message))
        transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_upper, self._head_lower = True, self._chunk, 0
        extensions: dict[str, Any] | None = self.scope.get("extensions")
        if extensions is None:
            self.scope["extensions"] = self._extensions  # read-only for the app; one per connection
        else:
            extensions[CLIENT_GONE] = self._client_gone

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_upper > self.limits.max_header_bytes:
            # The chunks it came in are bigger than the limit: count the head itself.
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limits.max_header_bytes:
                raise _Refuse(431, self._too_big())
        super().on_headers_complete()
