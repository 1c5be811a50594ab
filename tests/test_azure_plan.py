"""Azure ML planning without a workspace: the names a deploy gives the model and the deployment,
what makes a new deployment, the traffic steps, and the refusals before anything is read
(fast: no emulator, no TensorFlow, no Azure SDK)."""

from __future__ import annotations

import pytest

from cloudml.errors import ConfigError, ModelError
from cloudml.providers.azure.options import AzureOptions
from cloudml.providers.azure.plan import cloudml_tags, live_deployment, make_plan, traffic_steps
from cloudml.spec import DeploymentSpec

HASH = "sha256:" + "ab12" * 16
IMAGE = "myacr.azurecr.io/cloudml-serving:0.1.0"


def spec(**fields) -> DeploymentSpec:
    return DeploymentSpec(**{"name": "fraud-model", "model": "model.keras", **fields})


def plan(options: dict | None = None, **fields):
    return make_plan(spec(**fields), HASH, AzureOptions(**{"image_uri": IMAGE, **(options or {})}))


def test_names_come_from_the_deployment_and_the_model_hash():
    planned = plan()
    assert planned.name == "fraud-model" and planned.model_name == "cloudml-fraud-model"
    assert planned.deployment_name.startswith("cml-ab12ab12ab-") and len(planned.deployment_name) == len("cml-") + 10 + 1 + 5
    assert planned.blob_prefix == "cloudml/fraud-model/ab12ab12ab12ab12/model"
    assert (planned.instance_type, planned.instance_count) == ("Standard_DS3_v2", 1)


def test_the_same_request_plans_the_same_deployment_and_any_serving_setting_a_new_one():
    same = plan().deployment_name
    assert plan().deployment_name == same
    changed = {
        "instance type": plan(resources={"instance_type": "Standard_F4s_v2"}),
        "instance count": plan(resources={"min_replicas": 2}),
        "image": plan({"image_uri": IMAGE.replace("0.1.0", "0.2.0")}),
        "environment": plan({"environment": "azureml:tf-serving:3"}),
        "env": plan(env={"LOG_LEVEL": "debug"}),
    }
    names = {what: p.deployment_name for what, p in changed.items()}
    assert same not in names.values() and len(set(names.values())) == len(names), names
    assert all(n.startswith("cml-ab12ab12ab-") for n in names.values())  # still the same model
    assert plan(tags={"team": "vision"}).deployment_name == same  # tags are not a serving setting


def test_the_instance_count_is_the_largest_of_the_option_and_min_replicas():
    assert plan({"instance_count": 3}).instance_count == 3
    assert plan({"instance_count": 3}, resources={"min_replicas": 5}).instance_count == 5


def test_bad_resources_are_refused_with_a_hint():
    with pytest.raises(ConfigError, match="not an Azure ML managed online endpoint instance type") as typo:
        plan(resources={"instance_type": "Standard_DS3_v3"})
    assert "did you mean Standard_DS3_v2" in typo.value.hint
    with pytest.raises(ConfigError, match="does not set up autoscaling") as scaling:
        plan(resources={"min_replicas": 1, "max_replicas": 3})
    assert "--min-replicas" in scaling.value.hint


def test_traffic_moves_all_at_once_or_canary_first():
    assert traffic_steps("new", None, None) == [{"new": 100}]
    assert traffic_steps("new", None, 20) == [{"new": 100}]  # a first deploy has nothing to share with
    assert traffic_steps("new", "old", None) == [{"new": 100}]
    assert traffic_steps("new", "old", 20) == [{"new": 20, "old": 80}, {"new": 100}]
    assert traffic_steps("new", "new", 20) == [{"new": 100}]  # resuming after the canary moved everything


def test_the_live_deployment_takes_the_largest_share():
    assert live_deployment(None) is None and live_deployment({}) is None
    assert live_deployment({"old": 0}) is None
    assert live_deployment({"old": 80, "new": 20}) == "old"
    assert live_deployment({"old": 0, "new": 100}) == "new"


def test_cloudml_tags_win_over_the_users():
    planned = plan()
    tags = cloudml_tags(spec(tags={"team": "vision", "cloudml-deployment": "theirs"}), planned, version=3)
    assert tags == {"team": "vision", "cloudml-deployment": "fraud-model", "cloudml-model-hash": HASH, "cloudml-model-version": "3"}
    assert "cloudml-model-version" not in cloudml_tags(spec(), planned)


def test_a_deploy_without_an_image_or_a_bad_name_is_refused_before_the_model_is_read(tmp_path):
    import cloudml

    missing = tmp_path / "not-there.keras"  # never opened: the refusals come first
    with pytest.raises(ModelError, match="no Azure ML prebuilt image can serve this model") as no_image:
        cloudml.get_deployer("azure", build_image=False).deploy(DeploymentSpec(name="fraud-model", model=str(missing)))
    assert "image_uri" in no_image.value.hint and "environment" in no_image.value.hint
    # A name every cloud accepts but Azure ML does not (it is part of the scoring host name).
    with pytest.raises(ConfigError, match="cannot name an Azure ML online endpoint"):
        cloudml.get_deployer("azure", image_uri=IMAGE).deploy(DeploymentSpec(name="my--model", model=str(missing)))
