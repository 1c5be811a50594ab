"""The aws provider's decisions that need no cloud: names, counts and the unchanged/busy rules.

These are the choices that decide whether a deploy creates, reuses or refuses; the emulator tests
(test_aws_provider.py) show the same through the CLI, these pin the rules themselves.
"""

from __future__ import annotations

import pytest

from cloudml.errors import ConfigError, DeployFailed
from cloudml.providers.aws.deployer import Endpoint, SageMakerDeployer
from cloudml.spec import DeploymentSpec, Resources

ROLE = "arn:aws:iam::123456789012:role/cloudml-sagemaker"
HASH = "sha256:" + "ab" * 32
OTHER_HASH = "sha256:" + "cd" * 32


def deployer(**options) -> SageMakerDeployer:
    return SageMakerDeployer(**{"region": "eu-west-1", "role_arn": ROLE, **options})


def spec(**fields) -> DeploymentSpec:
    return DeploymentSpec(**{"name": "mnist-cnn", "model": "model.keras", **fields})


def endpoint(plan, *, status="InService", config=None, pending=None, target=None, model_hash=None, resumed=None) -> Endpoint:
    description = {"EndpointName": plan.name, "EndpointArn": f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{plan.name}",
                   "EndpointStatus": status, "EndpointConfigName": config or plan.config_name}
    if pending:
        description["PendingDeploymentSummary"] = {"EndpointConfigName": pending}
    return Endpoint(description, {"cloudml:deployment": plan.name, "cloudml:model-hash": model_hash or plan.model_hash}, target, resumed)


def test_names_carry_the_model_hash_and_are_stable():
    first = deployer().plan(spec(), HASH)
    again = deployer().plan(spec(), HASH)
    assert first == again
    assert first.model_name.startswith("mnist-cnn-abababab-")
    assert first.config_name.startswith("mnist-cnn-abababab-")
    assert first.model_name != first.config_name
    assert deployer().plan(spec(), OTHER_HASH).model_name.startswith("mnist-cnn-cdcdcdcd-")


def test_what_the_model_resource_holds_changes_its_name_and_what_the_config_holds_changes_only_the_config():
    base = deployer().plan(spec(), HASH)
    with_env = deployer().plan(spec(env={"LOG_LEVEL": "debug"}), HASH)
    assert with_env.model_name != base.model_name
    bigger = deployer().plan(spec(resources=Resources(instance_type="ml.m5.xlarge")), HASH)
    assert bigger.model_name == base.model_name
    assert bigger.config_name != base.config_name


def test_instance_count_is_within_the_replica_bounds():
    assert deployer().plan(spec(), HASH).instance_count == 1
    assert deployer(instance_count=3).plan(spec(), HASH).instance_count == 3
    assert deployer(instance_count=5).plan(spec(resources=Resources(min_replicas=1, max_replicas=2)), HASH).instance_count == 2
    assert deployer().plan(spec(resources=Resources(min_replicas=2)), HASH).instance_count == 2


def test_bad_requests_are_refused_before_any_call():
    with pytest.raises(ConfigError, match="execution role"):
        SageMakerDeployer(region="eu-west-1").check_request(spec())
    with pytest.raises(ConfigError, match="at least one instance"):
        deployer().plan(spec(resources=Resources(min_replicas=0, max_replicas=2)), HASH)
    with pytest.raises(ConfigError):
        deployer().plan(spec(resources=Resources(instance_type="ml.nope.large")), HASH)


def test_unchanged_means_in_service_with_this_config_and_the_asked_autoscaling():
    d = deployer()
    plan = d.plan(spec(), HASH)
    assert d.is_unchanged(endpoint(plan), plan)
    assert not d.is_unchanged(endpoint(plan, status="Updating"), plan)
    assert not d.is_unchanged(endpoint(plan, config="mnist-cnn-00000000-000000"), plan)
    # Serving this config but not finished by cloudml: an earlier run's change still owes its tags and clean-up.
    assert not d.is_unchanged(endpoint(plan, model_hash=OTHER_HASH), plan)
    assert not d.is_unchanged(endpoint(plan, resumed="updated"), plan)
    scaled = d.plan(spec(resources=Resources(min_replicas=1, max_replicas=3)), HASH)
    assert not d.is_unchanged(endpoint(scaled), scaled)  # not registered yet
    assert not d.is_unchanged(endpoint(scaled, target={"MinCapacity": 1, "MaxCapacity": 2}), scaled)
    assert d.is_unchanged(endpoint(scaled, target={"MinCapacity": 1, "MaxCapacity": 3}), scaled)


def test_an_endpoint_busy_with_another_change_is_refused():
    d = deployer()
    plan = d.plan(spec(), HASH)
    busy = endpoint(plan, status="Updating", config="mnist-cnn-00000000-000000", pending="mnist-cnn-11111111-111111")
    with pytest.raises(DeployFailed, match="with another change"):
        d.settle(busy, plan)
    with pytest.raises(DeployFailed, match="Deleting"):
        d.settle(endpoint(plan, status="Deleting"), plan)


def test_a_reason_becomes_a_tag_value_sagemaker_accepts():
    import re

    from cloudml.providers.aws.deployer import tag_value

    value = tag_value("tf2onnx has no ONNX mapping for op 'Lgamma' (opset 17);\n" + "then more " * 40)
    assert re.fullmatch(r"[\w\s.:/=+\-@]*", value) and len(value) <= 256 and value.endswith("...")
    assert value.startswith("tf2onnx has no ONNX mapping for op Lgamma opset 17 then more")
