"""SIGUSR1 drains a server: it stops taking connections and tells kept-alive clients to reconnect,
which is how a replacement takes over a port without dropping anyone's request."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_drain_sends_kept_alive_clients_away_and_refuses_new_ones(deployed):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cloudml", "serve", deployed["cnn"]["details"]["package"], "--port", str(port)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                kept_alive.request("GET", "/ping")
                response = kept_alive.getresponse()
                response.read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "server never came up"
                time.sleep(0.2)
        assert response.status == 200 and response.getheader("connection") is None
        server.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        kept_alive.request("GET", "/ping")
        response = kept_alive.getresponse()
        response.read()
        assert response.status == 200 and response.getheader("connection") == "close"  # still answered, then sent away
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert server.poll() is None  # draining is not stopping: in-flight work can finish
    finally:
        server.terminate()
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
