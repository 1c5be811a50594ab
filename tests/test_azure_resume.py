"""azure: a deploy that stopped waiting (wait_timeout) or was interrupted is resumed by running it
again, and the run that resumes finishes what the first one owed: the traffic, the endpoint's
tags (the version reported), the previous deployment and its model version removed, and
`created` / `updated` as the change really was, without creating the deployment a second time."""

from __future__ import annotations

import json
import time

import pytest
from conftest import rows_close, run_cli
from test_azure_provider import NOTHING, tagged
from test_azure_provider import deploy as provider_deploy

pytestmark = pytest.mark.slow


def deploy(model, name, *args, **kwargs):
    # TensorFlow-served: its server takes seconds to start, so a change outlasts wait_timeout=1 and
    # the test sees it under way (an ONNX-served one can be done before the next command runs).
    return provider_deploy(model, name, "--runtime", "tensorflow", *args, **kwargs)


def status(name: str, home) -> dict:
    return json.loads(run_cli("status", name, "--provider", "azure", "--output", "json", home=home).stdout)


def creates(azure_emulator) -> int:
    return sum(1 for c in azure_emulator.calls() if "deployments/write" in c["action"].lower())


def provisioned(ml, endpoint: str, deployment: str, timeout: float = 300) -> str:
    """The deployment's provisioning state once Azure ML is done with it."""
    deadline = time.monotonic() + timeout
    def read() -> str:
        value = ml.online_deployments.get(deployment, endpoint).provisioning_state
        return str(getattr(value, "value", value)).lower()  # an enum or a string, by SDK version

    while (state := read()) in ("creating", "updating"):
        assert time.monotonic() < deadline, f"deployment {deployment} is still {state}"
        time.sleep(0.5)
    return state


def test_a_timed_out_update_resumes_and_finishes(azure_emulator, ml, blobs, seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    first = deploy(cnn.path, "cnn-resume", home=home)["deployment"]
    azure_emulator.calls(clear=True)
    stopped = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", "-o", "wait_timeout=1", home=home, expect=5)
    assert "run the same deploy again" in stopped.stderr
    # The new deployment provisions beside the live one, which keeps all the traffic.
    during = status("cnn-resume", home)
    assert during["status"] == "updating" and during["model_version"] == 1 and during["model_hash"] == first["model_hash"]
    traffic = ml.online_endpoints.get("cnn-resume").traffic
    assert {d: p for d, p in traffic.items() if p} == {first["details"]["live_deployment"]: 100}

    resumed = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)
    assert resumed["action"] == "updated"
    dep = resumed["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 2 and dep["model_hash"] != first["model_hash"]
    assert creates(azure_emulator) == 1  # waited for, not created again
    left = tagged(ml, blobs, "cnn-resume")
    assert left["deployments"] == [dep["details"]["live_deployment"]] != [first["details"]["live_deployment"]]
    assert left["models"] == ["cloudml-cnn-resume:2"]
    predicted = run_cli("predict", "cnn-resume", json.dumps(cnn.instances), "--provider", "azure", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], other_cnn[1])

    assert deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-resume", "--provider", "azure", "--purge", home=home).returncode == 0
    assert tagged(ml, blobs, "cnn-resume") == NOTHING


def test_an_update_that_finished_by_itself_is_completed_by_the_next_run(azure_emulator, ml, blobs, seed_models, other_cnn, home):
    first = deploy(seed_models["cnn"].path, "cnn-late", home=home)["deployment"]
    deploy(other_cnn[0], "cnn-late", "--model-version", "2", "-o", "wait_timeout=1", home=home, expect=5)
    [new] = [d.name for d in ml.online_deployments.list("cnn-late") if d.name != first["details"]["live_deployment"]]
    assert provisioned(ml, "cnn-late", new) == "succeeded"  # Azure ML finished it on its own
    azure_emulator.calls(clear=True)

    later = deploy(other_cnn[0], "cnn-late", "--model-version", "2", home=home)
    assert later["action"] == "updated" and later["deployment"]["model_version"] == 2
    assert later["deployment"]["details"]["live_deployment"] == new and creates(azure_emulator) == 0
    left = tagged(ml, blobs, "cnn-late")
    assert left["deployments"] == [new] and left["models"] == ["cloudml-cnn-late:2"]
    assert run_cli("delete", "cnn-late", "--provider", "azure", "--purge", home=home).returncode == 0


def test_a_timed_out_create_resumes_as_created(azure_emulator, ml, blobs, seed_models, home):
    cnn = seed_models["cnn"]
    deploy(cnn.path, "cnn-first", "-o", "wait_timeout=1", home=home, expect=5)
    # Stopped while the endpoint or its deployment was provisioning: not serving yet.
    assert status("cnn-first", home)["status"] in ("creating", "unhealthy")
    resumed = deploy(cnn.path, "cnn-first", home=home)
    assert resumed["action"] == "created" and resumed["deployment"]["status"] == "healthy"
    assert resumed["deployment"]["model_version"] == 1
    assert deploy(cnn.path, "cnn-first", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-first", "--provider", "azure", "--purge", home=home).returncode == 0
    assert tagged(ml, blobs, "cnn-first") == NOTHING


def test_a_run_interrupted_after_moving_traffic_is_cleaned_up_by_the_next(azure_emulator, ml, blobs, seed_models, other_cnn, home, monkeypatch):
    from test_azure_provider import IMAGE

    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.azure.deployer import AzureMLDeployer

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    first = deploy(seed_models["cnn"].path, "cnn-cut", home=home)["deployment"]
    spec = DeploymentSpec(name="cnn-cut", model=other_cnn[0], model_version=2, runtime="tensorflow")  # as deploy() packages it

    def interrupted(self, rollout):
        raise KeyboardInterrupt  # Ctrl-C (or a kill) once the traffic moved, before the clean-up

    with monkeypatch.context() as patch:
        patch.setattr(AzureMLDeployer, "retire_previous", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cloudml.get_deployer("azure", image_uri=IMAGE, poll_interval=0.3, preflight=False).deploy(spec)
    assert len(tagged(ml, blobs, "cnn-cut")["deployments"]) == 2

    again = deploy(other_cnn[0], "cnn-cut", "--model-version", "2", home=home)
    assert again["deployment"]["model_version"] == 2
    left = tagged(ml, blobs, "cnn-cut")
    assert left["deployments"] == [again["deployment"]["details"]["live_deployment"]] != [first["details"]["live_deployment"]]
    assert left["models"] == ["cloudml-cnn-cut:2"]
    assert run_cli("delete", "cnn-cut", "--provider", "azure", "--purge", home=home).returncode == 0


def test_a_first_deploy_that_provisioned_after_its_run_was_killed_is_finished_and_reported_created(azure_emulator, ml, blobs, seed_models, home,
                                                                                                  monkeypatch):
    """ONNX-served (the default runtime): the deployment has provisioned before the next run
    starts, and that run still moves the traffic to it and says `created`, not `unchanged`."""
    from test_azure_provider import IMAGE

    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.azure.deployer import AzureMLDeployer

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    cnn = seed_models["cnn"]

    def killed(self, endpoint, name):
        raise KeyboardInterrupt  # Ctrl-C (or a kill) right after the deployment was asked for

    with monkeypatch.context() as patch:
        patch.setattr(AzureMLDeployer, "_wait_deployment", killed)
        with pytest.raises(KeyboardInterrupt):
            cloudml.get_deployer("azure", image_uri=IMAGE, poll_interval=0.3).deploy(DeploymentSpec(name="cnn-done", model=cnn.path, model_version=3))
    [made] = tagged(ml, blobs, "cnn-done")["deployments"]
    assert provisioned(ml, "cnn-done", made) == "succeeded"  # Azure ML finished it on its own
    azure_emulator.calls(clear=True)

    later = provider_deploy(cnn.path, "cnn-done", "--model-version", "3", home=home)
    assert later["action"] == "created"
    dep = later["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 3 and dep["details"]["runtime"] == "onnx"
    assert dep["details"]["live_deployment"] == made and creates(azure_emulator) == 0  # not created a second time
    predicted = run_cli("predict", "cnn-done", json.dumps(cnn.instances), "--provider", "azure", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
    assert provider_deploy(cnn.path, "cnn-done", "--model-version", "3", home=home)["action"] == "unchanged"
    assert run_cli("delete", "cnn-done", "--provider", "azure", "--purge", home=home).returncode == 0
    assert tagged(ml, blobs, "cnn-done") == NOTHING
