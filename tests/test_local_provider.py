"""What only the local provider does: every seed model over every serving contract, a replace with no
downtime, timeouts, dead servers, several serving processes, Ctrl-C, cloudml.yaml. What every
provider promises (redeploys, failed replaces, refusals, missing names) is in tests/contract."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import cli_json, run_cli

pytestmark = pytest.mark.slow


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def _predictions(result) -> np.ndarray:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["predictions"]


def _allclose_rows(got, expected) -> bool:
    return len(got) == len(expected) and all(np.allclose(g, e, atol=1e-5) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("model_name", ["autoencoder", "cnn", "lstm"])
def test_seed_model_lifecycle_through_the_cli(seed_models, home, tmp_path, model_name):
    model = seed_models[model_name]
    name = f"life-{model_name}"
    created = cli_json("deploy", model.path, "--name", name, "--tag", "team=ml", home=home)
    assert created["action"] == "created"
    dep = created["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 1 and dep["tags"] == {"team": "ml"}
    assert dep["endpoint_url"].startswith("http://127.0.0.1:")
    pid = dep["details"]["pid"]

    expected = model.reference()
    request = json.dumps({"instances": model.instances})
    (tmp_path / "req.json").write_text(request)
    assert _allclose_rows(_predictions(run_cli("predict", name, request, home=home)), expected)
    assert _allclose_rows(_predictions(run_cli("predict", name, "--file", tmp_path / "req.json", home=home)), expected)
    assert _allclose_rows(_predictions(run_cli("predict", name, home=home, input=request)), expected)

    # One request per contract over plain HTTP (the full contract matrix is in test_serving_contracts).
    url = dep["endpoint_url"]
    for path, body in [("/invocations", {"instances": model.instances}), ("/predict", {"instances": model.instances}),
                       ("/score", {"data": model.instances}), (f"/v1/models/{name}:predict", {"instances": model.instances})]:
        response = httpx.post(url + path, json=body, timeout=30)
        assert response.status_code == 200, (path, response.text)
        assert _allclose_rows(response.json()["predictions"], expected), path

    status = cli_json("status", name, home=home)
    assert status["status"] == "healthy" and status["details"]["pid"] == pid
    assert [d["name"] for d in cli_json("list", home=home)] == [name]
    logs = run_cli("logs", name, "--tail", "200", home=home)
    assert logs.returncode == 0 and '"POST /invocations" 200' in logs.stdout and "ms" in logs.stdout

    deleted = cli_json("delete", name, home=home)
    assert deleted == {"name": name, "deleted": True}
    assert not _pid_alive(pid)
    assert cli_json("list", home=home) == []
    assert not (home / "deployments" / name).exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/ping", timeout=2)


def test_replacing_a_model_has_no_downtime(seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    new_path, new_outputs = other_cnn
    old_outputs = cnn.reference()
    dep = cli_json("deploy", cnn.path, "--name", "swap", home=home)["deployment"]
    url = dep["endpoint_url"] + "/invocations"
    results: list[tuple[int, list | str]] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(url, json={"instances": cnn.instances})
                    results.append((response.status_code, response.json().get("predictions")))
                except httpx.TransportError as exc:
                    results.append((0, repr(exc)))
                    client.close()
                    client = httpx.Client(timeout=10)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        replaced = cli_json("deploy", new_path, "--name", "swap", home=home)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert replaced["action"] == "updated"
    assert replaced["deployment"]["endpoint_url"] == dep["endpoint_url"]  # clients keep their URL
    assert not _pid_alive(dep["details"]["pid"])  # the old server stopped
    failures = [r for r in results if r[0] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed during the replace: {failures[:3]}"
    old = [r for r in results if _allclose_rows(r[1], old_outputs)]
    new = [r for r in results if _allclose_rows(r[1], new_outputs)]
    assert old and new and len(old) + len(new) == len(results)
    # Traffic moved once: after the first answer from the new model, no old answers.
    first_new = next(i for i, r in enumerate(results) if _allclose_rows(r[1], new_outputs))
    assert len(old) <= first_new + 2  # two threads: each may have one old answer in flight


def test_replacement_that_never_gets_healthy_times_out_and_is_removed(seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    before = cli_json("deploy", cnn.path, "--name", "slow", home=home)["deployment"]
    result = run_cli("deploy", other_cnn[0], "--name", "slow", "-o", "startup_timeout=0.5", home=home)
    assert result.returncode == 5
    assert "did not become healthy within" in result.stderr and "previous version keeps serving" in result.stderr
    after = cli_json("status", "slow", home=home)
    assert after["details"]["pid"] == before["details"]["pid"] and after["status"] == "healthy"


def test_a_dead_server_is_reported_as_dead_and_redeploy_restarts_it(seed_models, home):
    cnn = seed_models["cnn"]
    dep = cli_json("deploy", cnn.path, "--name", "crash", home=home)["deployment"]
    os.kill(dep["details"]["pid"], 9)
    deadline = time.monotonic() + 10
    while _pid_alive(dep["details"]["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = run_cli("status", "crash", "--output", "json", home=home)
    assert status.returncode == 8 and json.loads(status.stdout)["status"] == "dead"
    predict = run_cli("predict", "crash", json.dumps(cnn.instances), home=home)
    assert predict.returncode == 8 and "dead" in predict.stderr
    listed = cli_json("list", home=home)
    assert listed[0]["status"] == "dead"
    again = cli_json("deploy", cnn.path, "--name", "crash", home=home)
    assert again["action"] == "restarted" and again["deployment"]["status"] == "healthy"
    assert again["deployment"]["endpoint_url"] == dep["endpoint_url"]


def test_python_api_lifecycle(seed_models, home):
    from cloudml import DeploymentNotFound, DeploymentSpec, PredictionRejected, get_deployer

    lstm = seed_models["lstm"]
    deployer = get_deployer("local", home=home)
    result = deployer.deploy(DeploymentSpec(name="api-lstm", model=lstm.path, env={"APP_MODE": "test"}))
    assert result.action == "created" and result.deployment.status.serving
    prediction = deployer.predict("api-lstm", instances=lstm.instances)
    assert _allclose_rows(prediction.predictions, lstm.reference())
    assert json.loads(prediction.to_json())["deployment"] == "api-lstm"
    with pytest.raises(PredictionRejected) as err:
        deployer.predict("api-lstm", instances=[[0.5, 1.5]])
    assert err.value.status_code == 400 and "integers" in err.value.message
    assert [d.name for d in deployer.list()] == ["api-lstm"]
    deadline = time.monotonic() + 5  # the server writes its access log every 0.1 s
    while not any("POST /invocations" in line for line in deployer.logs("api-lstm", tail=50)):
        assert time.monotonic() < deadline, "no access-log line for the prediction"
        time.sleep(0.05)
    # Changing the serving environment needs a new server: an update, not a no-op.
    assert deployer.update(DeploymentSpec(name="api-lstm", model=lstm.path, env={"APP_MODE": "prod"})).action == "updated"
    assert deployer.delete("api-lstm") is True
    with pytest.raises(DeploymentNotFound):
        deployer.get("api-lstm")


def test_logs_follow_streams_new_requests_until_the_deployment_goes(seed_models, home):
    import subprocess
    import sys

    cnn = seed_models["cnn"]
    dep = cli_json("deploy", cnn.path, "--name", "tail", home=home)["deployment"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "cloudml", "logs", "tail", "--tail", "0", "--follow"],
        env={**os.environ, "CLOUDML_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
    try:
        # Requests until the follower prints one: it may still be starting (and --tail 0 skips what came before).
        deadline = time.monotonic() + 60
        while True:
            httpx.get(dep["endpoint_url"] + "/v1/models/tail", timeout=10, trust_env=False)
            try:
                line = lines.get(timeout=2)
                break
            except queue.Empty:
                assert time.monotonic() < deadline and follower.poll() is None, "logs --follow printed no new request"
        assert '"GET /v1/models/tail" 200' in line
        cli_json("delete", "tail", home=home)
        assert follower.wait(timeout=15) == 0  # the deployment is gone: nothing more to follow
    finally:
        follower.kill()


def test_cloudml_yaml_env_and_flags_drive_a_real_deploy(seed_models, home, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = tmp_path / "project"
    project.mkdir()
    (project / "cloudml.yaml").write_text(f"name: from-yaml\nmodel: {seed_models['cnn'].path}\nlocal:\n  port: 1\n")
    # The file says port 1; CLOUDML_LOCAL_PORT overrides it; --name overrides the file's name.
    result = run_cli("deploy", "--name", "from-flag", "--output", "json", home=home, cwd=project,
                     env={"CLOUDML_LOCAL_PORT": str(port)})
    assert result.returncode == 0, result.stderr
    dep = json.loads(result.stdout)["deployment"]
    assert dep["name"] == "from-flag" and dep["endpoint_url"] == f"http://127.0.0.1:{port}"
    status = run_cli("status", "from-flag", home=home, cwd=project)
    assert status.returncode == 0 and "healthy" in status.stdout


def test_several_serving_processes_share_the_port_and_stop_together(seed_models, home):
    cnn = seed_models["cnn"]
    dep = cli_json("deploy", cnn.path, "--name", "multi", "--env", "CLOUDML_WORKERS=2", home=home)["deployment"]
    parent = dep["details"]["pid"]
    expected = cnn.reference()
    answered_by: set[int] = set()
    deadline = time.monotonic() + 90
    # The second process starts once the first is warm; new connections spread over both.
    while len(answered_by) < 2 and time.monotonic() < deadline:
        with httpx.Client(timeout=30, trust_env=False) as fresh:
            answered_by.add(fresh.get(dep["endpoint_url"] + "/ping").json()["pid"])
            response = fresh.post(dep["endpoint_url"] + "/invocations", json={"instances": cnn.instances})
        assert response.status_code == 200 and _allclose_rows(response.json()["predictions"], expected)
        time.sleep(0.05)
    assert parent in answered_by and len(answered_by) == 2, answered_by
    (worker,) = answered_by - {parent}
    # A serving process that dies is replaced.
    os.kill(worker, 9)
    replacement = None
    while replacement is None and time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=30, trust_env=False) as fresh:
                pid = fresh.get(dep["endpoint_url"] + "/ping").json()["pid"]
        except httpx.TransportError:
            continue  # a connection queued at the killed process is reset by the kernel: expected
        replacement = pid if pid not in (parent, worker) else None
        time.sleep(0.05)
    assert replacement is not None, "the dead serving process was not replaced"
    cli_json("delete", "multi", home=home)
    assert not any(_pid_alive(pid) for pid in (parent, worker, replacement))


def test_ctrl_c_during_deploy_leaves_no_server_behind(seed_models, home):
    import signal
    import subprocess
    import sys

    deploy = subprocess.Popen([sys.executable, "-m", "cloudml", "deploy", str(seed_models["cnn"].path), "--name", "ctrlc"],
                              env={**os.environ, "CLOUDML_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = str(home / "deployments" / "ctrlc")
    deadline = time.monotonic() + 30
    while not subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout and time.monotonic() < deadline:
        time.sleep(0.05)  # until the server process exists (it then spends seconds importing TensorFlow)
    deploy.send_signal(signal.SIGINT)
    assert deploy.wait(timeout=60) == 130
    assert cli_json("list", home=home) == []
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_a_server_that_does_not_answer_http_fails_the_deploy_and_is_stopped(seed_models, home, tmp_path):
    """Whatever answers on the new server's socket must speak HTTP to count as healthy; when it
    never does, the deploy times out, says so, and stops the process it started."""
    import subprocess
    import textwrap

    garble = tmp_path / "garble"
    garble.mkdir()
    # In the server process only (--env): every response goes out as bytes that are not HTTP.
    (garble / "sitecustomize.py").write_text(textwrap.dedent("""
        from cloudml.serving import protocol

        def flush(self):
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(b"NOT HTTP\\r\\n\\r\\n")

        protocol.CoalescingTransport.flush = flush
    """))
    result = run_cli("deploy", seed_models["cnn"].path, "--name", "garbled", "--env", f"PYTHONPATH={garble}",
                     "-o", "startup_timeout=8", home=home)
    assert result.returncode == 5, result.stderr
    assert "did not become healthy within 8s" in result.stderr
    assert cli_json("list", home=home) == []
    marker = str(home / "deployments" / "garbled")
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b"", "the garbled server was left running"
