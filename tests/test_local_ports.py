"""A local deployment's port is its own: a deploy refuses a port anything listens on, and nothing
else (another deployment, another program, even with SO_REUSEPORT) can join it."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import cli_json, run_cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reuseport_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_port_another_program_listens_on_is_refused_even_with_so_reuseport(seed_models, home):
    port = _free_port()
    with _reuseport_socket(port):
        result = run_cli("deploy", seed_models["cnn"].path, "--name", "taken", "-o", f"port={port}", home=home)
    assert result.returncode == 2, result.stderr
    assert f"port {port}" in result.stderr and "already in use" in result.stderr and "Traceback" not in result.stderr
    assert cli_json("list", home=home) == []


def test_two_deployments_on_one_port_never_answer_each_others_traffic(seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    port = _free_port()
    # Both deploys at the same moment: one gets the port, the other is refused.
    deploys = [
        subprocess.Popen([sys.executable, "-m", "cloudml", "deploy", str(model), "--name", name, "-o", f"port={port}", "--output", "json"],
                         env={**os.environ, "CLOUDML_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, model in (("first", cnn.path), ("second", other_cnn[0]))
    ]
    outcomes = [(d.wait(timeout=300), *d.communicate()) for d in deploys]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    winner = ["first", "second"][[code for code, _, _ in outcomes].index(0)]
    loser = outcomes[[code for code, _, _ in outcomes].index(2)]
    assert "already in use" in loser[2]
    assert [d["name"] for d in cli_json("list", home=home)] == [winner]
    expected = cnn.reference() if winner == "first" else other_cnn[1]
    for _ in range(8):
        result = run_cli("predict", winner, json.dumps(cnn.instances), home=home)
        assert result.returncode == 0, result.stderr
        assert all(np.allclose(g, e, atol=1e-5) for g, e in zip(json.loads(result.stdout)["predictions"], expected))

    # No stranger can join the deployment's port, SO_REUSEPORT or not.
    with pytest.raises(OSError) as err:
        _reuseport_socket(port)
    assert err.value.errno == errno.EADDRINUSE
    # A later deploy of the other name on that port is refused too; the winner keeps its traffic.
    again = run_cli("deploy", other_cnn[0] if winner == "first" else cnn.path, "--name", "third", "-o", f"port={port}", home=home)
    assert again.returncode == 2 and "already in use" in again.stderr
    assert cli_json("status", winner, home=home)["status"] == "healthy"
