"""aws: a deploy that stopped waiting (wait_timeout) is resumed by running it again, and the run
that resumes finishes what the first one owed: tags, the version reported, the old version's
Model and EndpointConfig removed, and `created` / `updated` as the change really was."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudml-serving:0.1.0"


def deploy(model, name, *args, home, runtime="tensorflow"):
    # TensorFlow-served by default: its server takes seconds to start, so a change outlasts
    # wait_timeout=1 and the test sees it under way (an ONNX-served one can be done before the
    # next command runs).
    return run_cli("deploy", model, "--name", name, "--provider", "aws", "-o", f"image_uri={IMAGE}", "--runtime", runtime, *args,
                   "--output", "json", home=home)


def owned(name: str) -> tuple[list[str], list[str]]:
    sm = boto3.client("sagemaker")

    def mine(arn):
        return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}.get("cloudml:deployment") == name

    return ([m["ModelName"] for m in sm.list_models()["Models"] if mine(m["ModelArn"])],
            [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"] if mine(c["EndpointConfigArn"])])


def wait_in_service(name: str, timeout: float = 120) -> dict:
    sm = boto3.client("sagemaker")
    deadline = time.monotonic() + timeout
    while True:
        endpoint = sm.describe_endpoint(EndpointName=name)
        if endpoint["EndpointStatus"] == "InService" or time.monotonic() > deadline:
            return endpoint
        time.sleep(0.5)


def test_a_timed_out_update_resumes_and_finishes(aws_emulator, seed_models, other_cnn, home):
    first = deploy(seed_models["cnn"].path, "cnn-resume", home=home)
    assert first.returncode == 0, first.stderr
    old_hash = json.loads(first.stdout)["deployment"]["model_hash"]

    stopped = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", "-o", "wait_timeout=1", home=home)
    assert stopped.returncode == 5, stopped.stdout + stopped.stderr
    assert "still Updating" in json.loads(stopped.stdout)["message"]
    # What SageMaker reports while the update runs: the config it moves to, beside the serving one.
    during = boto3.client("sagemaker").describe_endpoint(EndpointName="cnn-resume")
    assert during["EndpointStatus"] == "Updating"
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] != during["EndpointConfigName"]

    resumed = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["action"] == "updated"
    assert out["deployment"]["model_version"] == 2 and out["deployment"]["model_hash"] != old_hash
    models, configs = owned("cnn-resume")
    assert len(models) == 1 and configs == [out["deployment"]["details"]["endpoint_config"]]
    assert "PendingDeploymentSummary" not in boto3.client("sagemaker").describe_endpoint(EndpointName="cnn-resume")

    again = deploy(other_cnn[0], "cnn-resume", "--model-version", "2", home=home)
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert run_cli("delete", "cnn-resume", "--provider", "aws", home=home).returncode == 0


def test_an_update_that_finished_by_itself_is_completed_by_the_next_run(aws_emulator, seed_models, other_cnn, home):
    assert deploy(seed_models["cnn"].path, "cnn-late", home=home).returncode == 0
    assert deploy(other_cnn[0], "cnn-late", "--model-version", "2", "-o", "wait_timeout=1", home=home).returncode == 5
    assert wait_in_service("cnn-late")["EndpointStatus"] == "InService"

    later = deploy(other_cnn[0], "cnn-late", "--model-version", "2", home=home)
    assert later.returncode == 0, later.stdout + later.stderr
    out = json.loads(later.stdout)
    assert out["action"] == "updated" and out["deployment"]["model_version"] == 2
    models, configs = owned("cnn-late")
    assert len(models) == 1 and len(configs) == 1
    assert run_cli("delete", "cnn-late", "--provider", "aws", home=home).returncode == 0


def test_a_timed_out_create_resumes_as_created(aws_emulator, seed_models, home):
    stopped = deploy(seed_models["cnn"].path, "cnn-first", "-o", "wait_timeout=1", home=home)
    assert stopped.returncode == 5, stopped.stdout + stopped.stderr
    resumed = deploy(seed_models["cnn"].path, "cnn-first", home=home)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["action"] == "created"
    assert json.loads(resumed.stdout)["deployment"]["status"] == "healthy"
    assert json.loads(deploy(seed_models["cnn"].path, "cnn-first", home=home).stdout)["action"] == "unchanged"
    assert run_cli("delete", "cnn-first", "--provider", "aws", home=home).returncode == 0


def test_a_first_deploy_stopped_after_its_create_call_is_finished_and_reported_created(aws_emulator, seed_models, home, monkeypatch):
    """ONNX-served (the default runtime): the endpoint is InService before the next run starts,
    and that run still finishes the create (its tags) and says `created`, not `unchanged`."""
    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.aws.deployer import SageMakerDeployer

    monkeypatch.setenv("CLOUDML_HOME", str(home))

    def stopped(self, name, goal):
        raise KeyboardInterrupt  # Ctrl-C (or a kill) right after CreateEndpoint was sent

    with monkeypatch.context() as patch:
        patch.setattr(SageMakerDeployer, "_wait", stopped)
        with pytest.raises(KeyboardInterrupt):
            cloudml.get_deployer("aws", image_uri=IMAGE).deploy(DeploymentSpec(name="cnn-done", model=seed_models["cnn"].path, model_version=3))
    assert wait_in_service("cnn-done")["EndpointStatus"] == "InService"  # SageMaker finished it on its own

    later = deploy(seed_models["cnn"].path, "cnn-done", "--model-version", "3", home=home, runtime="auto")
    assert later.returncode == 0, later.stdout + later.stderr
    out = json.loads(later.stdout)
    assert out["action"] == "created"
    dep = out["deployment"]
    assert dep["status"] == "healthy" and dep["model_version"] == 3 and dep["details"]["runtime"] == "onnx"
    assert dep["model_hash"] and dep["model_hash"].startswith("sha256:")
    models, configs = owned("cnn-done")
    assert len(models) == 1 and configs == [dep["details"]["endpoint_config"]]

    again = deploy(seed_models["cnn"].path, "cnn-done", "--model-version", "3", home=home, runtime="auto")
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert run_cli("delete", "cnn-done", "--provider", "aws", home=home).returncode == 0
