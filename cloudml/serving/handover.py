"""How a local deployment's servers own their port and are tied to the deploy that started them.

A deployment's listening socket is bound once, without SO_REUSEPORT (which would let any process
of the same user join the port), by the deploy that creates it. Every server of the deployment
serves that same socket: the first gets it from the deploy (inherited file descriptor), a
replacement gets it from the server it replaces over a unix socket in the deployment's private
folder (SCM_RIGHTS), its extra serving processes inherit it. A stranger cannot join the port.

Until the deploy has recorded a new server, the server is tied to it by a pipe: when the deploy
ends without releasing it (killed, crashed), the pipe reads end-of-file and the server stops, so
no server runs that the deploy state does not know about.

The variables are set by the local provider only; `cloudml serve` without them binds as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("cloudml.serving")

LISTEN_FD = "CLOUDML_LISTEN_FD"  # an inherited, already listening TCP socket to serve
HANDOFF_SOCKET = "CLOUDML_HANDOFF_SOCKET"  # where to hand that socket to this server's replacement
TIE_FD = "CLOUDML_TIE_FD"  # read end of the pipe to the deploy that started this server
RELEASE = b"R"


def inherited_listener() -> socket.socket | None:
    fd = os.environ.pop(LISTEN_FD, None)
    return socket.socket(fileno=int(fd)) if fd else None


def tie_to_parent() -> None:
    """Stop this server (and its process group) if its deploy ends before releasing it."""
    fd = os.environ.pop(TIE_FD, None)
    if not fd:
        return

    def watch() -> None:
        with os.fdopen(int(fd), "rb", buffering=0) as pipe:
            released = pipe.read(1) == RELEASE
        if not released:
            log.error("the deploy that started this server ended before recording it: stopping")
            os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="cloudml-tie", daemon=True).start()


@contextlib.contextmanager
def handing_off(listener: socket.socket) -> Iterator[None]:
    """Answer each connection on $CLOUDML_HANDOFF_SOCKET with this server's listening socket."""
    path = os.environ.pop(HANDOFF_SOCKET, None)
    if not path:
        yield
        return
    # Draining closes `listener`; what is handed over must stay open. os.dup, not socket.dup: that
    # would set the socket blocking, for every process sharing it (and stall their accept loops).
    own = os.dup(listener.fileno())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path).unlink(missing_ok=True)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed: the server is stopping
            with conn:
                with contextlib.suppress(OSError):
                    socket.send_fds(conn, [RELEASE], [own])

    threading.Thread(target=serve, name="cloudml-handoff", daemon=True).start()
    try:
        yield
    finally:
        server.close()
        os.close(own)
        Path(path).unlink(missing_ok=True)


def receive_listener(path: Path, timeout: float = 5.0) -> socket.socket:
    """The listening socket a running server hands over at `path` (raises OSError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    if not fds:
        raise ConnectionError(f"no socket was handed over at {path}")
    return socket.socket(fileno=fds[0])
