"""The local provider when a deploy is cut short: `kill -9` and SIGTERM of the CLI at each step of
a first deploy and of a replace, and a full disk under CLOUDML_HOME. Afterwards `status` and
`list` tell the truth, no server or port is leaked, errors are clear, and a re-run converges.

The deploy is stopped at an exact step by CLOUDML_TEST_LOCAL_FAULT=STEP:SIGNAL, which makes the
local deployer send itself SIGNAL there (a hook for these tests only, see providers/local/deployer.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_json, run_cli

pytestmark = pytest.mark.slow


def _servers(home: Path) -> set[int]:
    """Every process serving from `home` (their command lines name its folders)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                state = (proc / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if str(home).encode() in cmdline and b"serve" in cmdline and state != "Z":
                found.add(int(proc.name))
    return found


def _wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _killed_deploy(model, name: str, home: Path, fault: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudml", "deploy", str(model), "--name", name],
                          env={**os.environ, "CLOUDML_HOME": str(home), "CLOUDML_TEST_LOCAL_FAULT": fault},
                          capture_output=True, text=True, timeout=300)


def _answers(name: str, model, home: Path, expected) -> bool:
    result = run_cli("predict", name, json.dumps(model.instances), home=home)
    rows = json.loads(result.stdout)["predictions"] if result.returncode == 0 else []
    return len(rows) == len(expected) and all(np.allclose(g, e, atol=1e-5) for g, e in zip(rows, expected))


@pytest.mark.parametrize("fault", ["recorded:SIGKILL", "started:SIGKILL", "started:SIGTERM", "healthy:SIGKILL", "healthy:SIGHUP"])
def test_a_first_deploy_killed_before_it_recorded_its_server_leaves_nothing(seed_models, home, fault):
    cnn = seed_models["cnn"]
    killed = _killed_deploy(cnn.path, "first", home, fault)
    assert killed.returncode < 0 and "Traceback" not in killed.stderr, killed.stderr
    # The server it started stops by itself (tied to the deploy) or is reaped by the next command.
    assert cli_json("list", home=home) == []
    assert _wait_for(lambda: not _servers(home)), f"leaked servers: {_servers(home)}"
    assert run_cli("status", "first", home=home).returncode == 4
    # A re-run converges to one healthy server.
    again = cli_json("deploy", cnn.path, "--name", "first", home=home)
    assert again["action"] == "created" and again["deployment"]["status"] == "healthy"
    assert _servers(home) == {again["deployment"]["details"]["pid"]}
    port = again["deployment"]["details"]["port"]
    cli_json("delete", "first", home=home)
    assert not _servers(home) and _port_free(port)


@pytest.mark.parametrize("fault", ["switched:SIGKILL", "switched:SIGTERM"])
def test_a_first_deploy_killed_after_it_recorded_its_server_keeps_it(seed_models, home, fault):
    cnn = seed_models["cnn"]
    killed = _killed_deploy(cnn.path, "kept", home, fault)
    assert killed.returncode < 0 and "Traceback" not in killed.stderr, killed.stderr
    [dep] = cli_json("list", home=home)
    assert dep["status"] == "healthy" and _servers(home) == {dep["details"]["pid"]}
    assert _answers("kept", cnn, home, cnn.reference())
    again = cli_json("deploy", cnn.path, "--name", "kept", home=home)
    assert again["action"] == "unchanged" and again["deployment"]["details"]["pid"] == dep["details"]["pid"]


REPLACE_FAULTS = ["recorded:SIGKILL", "started:SIGKILL", "started:SIGTERM", "healthy:SIGKILL", "healthy:SIGTERM",
                  "switched:SIGKILL", "draining:SIGKILL", "draining:SIGTERM"]


@pytest.fixture(scope="module")
def replace_home(tmp_path_factory):
    from conftest import _cleanup_home

    path = tmp_path_factory.mktemp("faults") / "home"
    yield path
    _cleanup_home(path)


@pytest.mark.parametrize("fault", REPLACE_FAULTS)
def test_a_replace_killed_at_any_step_leaves_one_recorded_version_serving(seed_models, other_cnn, replace_home, fault):
    cnn, home = seed_models["cnn"], replace_home
    base = cli_json("deploy", cnn.path, "--name", "swap", home=home)["deployment"]
    killed = _killed_deploy(other_cnn[0], "swap", home, fault)
    assert killed.returncode < 0 and "Traceback" not in killed.stderr, killed.stderr
    switched = fault.split(":")[0] in ("switched", "draining")
    status = cli_json("status", "swap", home=home)  # finds and reaps what the killed deploy left
    assert status["status"] == "healthy"
    assert (status["details"]["pid"] != base["details"]["pid"]) == switched
    assert _wait_for(lambda: _servers(home) == {status["details"]["pid"]}), f"servers {_servers(home)}, recorded {status['details']['pid']}"
    assert [d["status"] for d in cli_json("list", home=home)] == ["healthy"]
    assert _answers("swap", cnn, home, other_cnn[1] if switched else cnn.reference())
    assert status["endpoint_url"] == base["endpoint_url"]
    # A re-run converges: back to the base model, one server on the same port.
    back = cli_json("deploy", cnn.path, "--name", "swap", home=home)
    assert back["action"] in ("unchanged", "updated") and back["deployment"]["endpoint_url"] == base["endpoint_url"]
    assert _wait_for(lambda: _servers(home) == {back["deployment"]["details"]["pid"]})


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield mount
    from conftest import _cleanup_home

    (mount / "filler").unlink(missing_ok=True)
    _cleanup_home(mount / "home")
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Fill the file system `path` is on, to the last byte."""
    with open(path, "wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError:
                pass


def test_a_full_disk_under_cloudml_home_gives_clear_errors_and_keeps_the_truth(seed_models, other_cnn, small_disk):
    cnn, home = seed_models["cnn"], small_disk / "home"
    base = cli_json("deploy", cnn.path, "--name", "full", home=home)["deployment"]
    _fill(small_disk / "filler")
    update = run_cli("deploy", other_cnn[0], "--name", "full", home=home)
    assert update.returncode != 0 and "Traceback" not in update.stderr and "JSONDecodeError" not in update.stderr, update.stderr
    assert "previous version" in update.stderr or "no space left" in update.stderr, update.stderr
    status = cli_json("status", "full", home=home)
    assert status["status"] == "healthy" and status["details"]["pid"] == base["details"]["pid"]
    assert [d["status"] for d in cli_json("list", home=home)] == ["healthy"]
    assert _answers("full", cnn, home, cnn.reference())
    assert _servers(home) == {base["details"]["pid"]}
    deleted = run_cli("delete", "full", "--output", "json", home=home)
    assert deleted.returncode == 0 and "Traceback" not in deleted.stderr, deleted.stderr
    assert not _servers(home) and cli_json("list", home=home) == []
    # With space again, a deploy converges.
    (small_disk / "filler").unlink()
    again = cli_json("deploy", other_cnn[0], "--name", "full", home=home)
    assert again["action"] == "created" and again["deployment"]["status"] == "healthy"


def test_a_deep_cloudml_home_keeps_its_sockets_private_and_removes_them_on_delete(seed_models, tmp_path):
    import tempfile

    home = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) / "home"
    dep = cli_json("deploy", seed_models["cnn"].path, "--name", "deep", home=home)["deployment"]
    try:
        assert dep["status"] == "healthy" and cli_json("status", "deep", home=home)["status"] == "healthy"
        # Where the server's health socket is, as `ps` shows it.
        args = Path(f"/proc/{dep['details']['pid']}/cmdline").read_bytes().split(b"\0")
        sock = Path(args[args.index(b"--unix-socket") + 1].decode())
        assert sock.parent != Path(tempfile.gettempdir()) / f"cloudml-{os.getuid()}", "a predictable folder"
        assert sock.exists() and (sock.parent.stat().st_mode & 0o777) == 0o700
    finally:
        cli_json("delete", "deep", home=home)
    assert not sock.parent.exists(), "the socket folder stayed after delete"
