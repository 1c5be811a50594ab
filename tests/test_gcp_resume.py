"""gcp: a deploy that stopped waiting (wait_timeout) or was interrupted is resumed by running it
again, and the run that resumes finishes what the first one owed: the traffic, the labels, the
previous Model undeployed and deleted, the version reported, and `created` / `updated` as the
change really was, without deploying the model a second time."""

from __future__ import annotations

import json
import time

import pytest
from conftest import rows_close, run_cli
from test_gcp_provider import IMAGE, NOTHING, labelled
from test_gcp_provider import deploy as provider_deploy

pytestmark = pytest.mark.slow


def status(name: str, home) -> dict:
    return json.loads(run_cli("status", name, "--provider", "gcp", "--output", "json", home=home).stdout)


def deploy(model, name, *args, **kwargs):
    # TensorFlow-served: its server takes seconds to start, so a change outlasts wait_timeout=1 and
    # the test sees it under way (an ONNX-served one can be done before the next command runs).
    return provider_deploy(model, name, "--runtime", "tensorflow", *args, **kwargs)


def deploy_calls(gcp_emulator) -> int:
    return [c["action"] for c in gcp_emulator.calls()].count("DeployModel")


def wait_deployed(vertex, name: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(vertex.Endpoint(name).gca_resource.deployed_models) < count:
        assert time.monotonic() < deadline, f"the deployModel on {name} did not finish"
        time.sleep(0.5)


def test_a_timed_out_update_resumes_and_finishes(gcp_emulator, vertex, seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    first = deploy(cnn.path, "cnn-resume", home=home)["deployment"]
    gcp_emulator.calls(clear=True)
    stopped = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", "-o", "wait_timeout=1", home=home, expect=5)
    assert "still waiting" in stopped.stderr
    # While Vertex deploys the new model the old one keeps all the traffic, and status says so.
    during = status("cnn-resume", home)
    assert during["status"] == "updating" and during["model_version"] == 1
    assert during["model_hash"] == first["model_hash"]

    resumed = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)
    assert resumed["action"] == "updated"
    dep = resumed["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 2 and dep["model_hash"] != first["model_hash"]
    assert deploy_calls(gcp_emulator) == 1  # waited for, not deployed again
    [deployed] = vertex.Endpoint("cnn-resume").gca_resource.deployed_models
    assert dep["details"]["traffic_split"] == {deployed.model.rsplit("/", 1)[-1]: 100}
    assert labelled(vertex, "cnn-resume")["models"] == [deployed.model.rsplit("/", 1)[-1]]  # the old Model went
    assert not {"cloudml-operation", "cloudml-pending-model"} & set(vertex.Endpoint("cnn-resume").labels)
    predicted = run_cli("predict", "cnn-resume", json.dumps(cnn.instances), "--provider", "gcp", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], other_cnn[1])

    assert deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-resume", "--provider", "gcp", "--purge", home=home).returncode == 0
    assert labelled(vertex, "cnn-resume") == NOTHING


def test_an_update_that_finished_by_itself_is_completed_by_the_next_run(gcp_emulator, vertex, seed_models, other_cnn, home):
    deploy(seed_models["cnn"].path, "cnn-late", home=home)
    deploy(other_cnn[0], "cnn-late", "--model-version", "2", "-o", "wait_timeout=1", home=home, expect=5)
    wait_deployed(vertex, "cnn-late", 2)  # Vertex finished the deployModel on its own
    gcp_emulator.calls(clear=True)

    later = deploy(other_cnn[0], "cnn-late", "--model-version", "2", home=home)
    assert later["action"] == "updated" and later["deployment"]["model_version"] == 2
    assert deploy_calls(gcp_emulator) == 0
    [deployed] = vertex.Endpoint("cnn-late").gca_resource.deployed_models
    assert labelled(vertex, "cnn-late")["models"] == [deployed.model.rsplit("/", 1)[-1]]
    assert run_cli("delete", "cnn-late", "--provider", "gcp", "--purge", home=home).returncode == 0


def test_a_timed_out_create_resumes_as_created(gcp_emulator, vertex, seed_models, home):
    cnn = seed_models["cnn"]
    deploy(cnn.path, "cnn-first", "-o", "wait_timeout=1", home=home, expect=5)
    assert status("cnn-first", home)["status"] == "creating"
    resumed = deploy(cnn.path, "cnn-first", "--model-version", "1", home=home)
    assert resumed["action"] == "created" and resumed["deployment"]["status"] == "healthy"
    assert resumed["deployment"]["model_version"] == 1
    assert deploy(cnn.path, "cnn-first", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-first", "--provider", "gcp", "--purge", home=home).returncode == 0


def test_a_first_deploy_interrupted_after_the_upload_is_shown_and_removable(gcp_emulator, vertex, seed_models, home, monkeypatch):
    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.gcp.deployer import VertexDeployer

    monkeypatch.setenv("CLOUDML_HOME", str(home))

    def interrupted(self, name, labels):
        raise KeyboardInterrupt  # Ctrl-C (or a kill) between the Model upload and the endpoint

    with monkeypatch.context() as patch:
        patch.setattr(VertexDeployer, "_create_endpoint", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cloudml.get_deployer("gcp", image_uri=IMAGE, poll_interval=0.3).deploy(DeploymentSpec(name="cnn-cut", model=seed_models["cnn"].path))
    left = labelled(vertex, "cnn-cut")
    assert left["endpoints"] == [] and len(left["models"]) == 1 and left["objects"]

    shown = run_cli("status", "cnn-cut", "--provider", "gcp", home=home)
    assert shown.returncode != 0
    assert left["models"][0].rsplit("/", 1)[-1] in shown.stderr and "delete cnn-cut" in shown.stderr
    listed = json.loads(run_cli("list", "--provider", "gcp", "--output", "json", home=home).stdout)
    [entry] = [d for d in listed if d["name"] == "cnn-cut"]
    assert entry["status"] == "failed" and entry["endpoint_url"] is None
    assert entry["details"]["models"] == [left["models"][0].rsplit("/", 1)[-1]]

    deleted = run_cli("delete", "cnn-cut", "--provider", "gcp", "--purge", home=home)
    assert deleted.returncode == 0, deleted.stderr
    assert labelled(vertex, "cnn-cut") == NOTHING
    assert not [d for d in json.loads(run_cli("list", "--provider", "gcp", "--output", "json", home=home).stdout) if d["name"] == "cnn-cut"]


def test_a_rejected_request_shows_the_servers_message_not_the_url(gcp_emulator, vertex, seed_models, home):
    deploy(seed_models["cnn"].path, "cnn-4xx", home=home)
    rejected = run_cli("predict", "cnn-4xx", json.dumps([[1.0, 2.0, 3.0]]), "--provider", "gcp", home=home)
    assert rejected.returncode == 6
    assert "cnn-4xx rejected the request" in rejected.stderr and "784" in rejected.stderr
    assert "%24alt" not in rejected.stderr and ":predict" not in rejected.stderr and "POST " not in rejected.stderr
    missing = run_cli("predict", "cnn-none", json.dumps([[1.0]]), "--provider", "gcp", home=home)
    assert missing.returncode != 0 and "cnn-none" in missing.stderr and "%24alt" not in missing.stderr
    assert run_cli("delete", "cnn-4xx", "--provider", "gcp", home=home).returncode == 0


def _deploy_killed_after_the_deploy_call(monkeypatch, home, **spec) -> None:
    """A deploy of `spec` stopped right after deployModel was sent, before the endpoint was labelled with it."""
    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.gcp.deployer import VertexDeployer

    def killed(self, endpoint_name, op_id, model_id):
        raise KeyboardInterrupt

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    with monkeypatch.context() as patch:
        patch.setattr(VertexDeployer, "_mark_pending", killed)
        with pytest.raises(KeyboardInterrupt):
            cloudml.get_deployer("gcp", image_uri=IMAGE, poll_interval=0.3).deploy(DeploymentSpec(**spec))


def test_a_deploy_killed_right_after_the_deploy_call_is_waited_for_not_repeated(gcp_emulator, vertex, seed_models, home, monkeypatch):
    cnn = seed_models["cnn"]
    gcp_emulator.calls(clear=True)
    _deploy_killed_after_the_deploy_call(monkeypatch, home, name="cnn-kill", model=cnn.path, runtime="tensorflow")
    assert "cloudml-operation" not in vertex.Endpoint("cnn-kill").labels

    resumed = deploy(cnn.path, "cnn-kill", home=home)
    assert resumed["action"] == "created" and resumed["deployment"]["status"] == "healthy"
    assert deploy_calls(gcp_emulator) == 1
    assert len(vertex.Endpoint("cnn-kill").gca_resource.deployed_models) == 1
    assert run_cli("delete", "cnn-kill", "--provider", "gcp", "--purge", home=home).returncode == 0
    assert labelled(vertex, "cnn-kill") == NOTHING


def test_a_refused_call_names_what_was_done_and_the_servers_text():
    import requests
    from google.api_core import exceptions as api

    import cloudml
    from cloudml.providers.gcp.session import gcp_errors

    response = requests.Response()
    response.status_code = 400
    response._content = json.dumps({"error": {"code": 400, "message": "Machine type \"n9-huge\" is not supported.", "status": "INVALID_ARGUMENT"}}).encode()
    url = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/cnn:deployModel?%24alt=json%3Benum-encoding%3Dint"
    refused = api.format_http_response_error(response, "POST", url, response.json())
    with pytest.raises(cloudml.DeployFailed) as failed, gcp_errors("deploying model m to endpoint cnn"):
        raise refused
    assert failed.value.message == 'Google Cloud refused deploying model m to endpoint cnn: INVALID_ARGUMENT: Machine type "n9-huge" is not supported.'


def test_a_first_deploy_that_finished_after_its_run_was_killed_is_finished_and_reported_created(gcp_emulator, vertex, seed_models, home, monkeypatch):
    """ONNX-served (the default runtime): Vertex has deployed the model before the next run starts,
    and that run still finishes the create (its labels) and says `created`, not `unchanged`."""
    cnn = seed_models["cnn"]
    gcp_emulator.calls(clear=True)
    _deploy_killed_after_the_deploy_call(monkeypatch, home, name="cnn-done", model=cnn.path, model_version=3)
    wait_deployed(vertex, "cnn-done", 1)  # Vertex finished the deployModel on its own

    later = provider_deploy(cnn.path, "cnn-done", "--model-version", "3", home=home)
    assert later["action"] == "created"
    dep = later["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 3 and dep["details"]["runtime"] == "onnx"
    assert deploy_calls(gcp_emulator) == 1  # not deployed a second time
    assert vertex.Endpoint("cnn-done").labels["cloudml-model-hash"] == dep["model_hash"].split(":")[1][:63]
    assert provider_deploy(cnn.path, "cnn-done", "--model-version", "3", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-done", "--provider", "gcp", "--purge", home=home).returncode == 0
    assert labelled(vertex, "cnn-done") == NOTHING
