"""How the gcp provider plans a deploy from the spec and the model hash alone: resource names,
labels, the refusals that need no account, and the traffic split of a canary (no emulator)."""

from __future__ import annotations

import pytest

import cloudml
from cloudml.errors import ConfigError
from cloudml.providers.gcp.plan import canary_split, check_spec, plan_deployment, scaled
from cloudml.spec import DeploymentSpec

HASH = "sha256:" + "ab12" * 16


def spec(**fields) -> DeploymentSpec:
    return DeploymentSpec(name="fraud", model="model.keras", provider="gcp", **fields)


def plan(s: DeploymentSpec, *, image_uri=None, location="us-central1"):
    return plan_deployment(s, HASH, default_machine_type="n1-standard-2", image_uri=image_uri, location=location)


def test_model_id_carries_the_model_hash_and_changes_with_what_the_model_resource_holds():
    base = plan(spec())
    assert base.model_id.startswith("fraud-ab12ab12-") and len(base.model_id) == len("fraud-ab12ab12-") + 6
    assert plan(spec()).model_id == base.model_id  # the same request finds the same Model
    assert plan(spec(), image_uri="us-docker.pkg.dev/p/r/serving:1").model_id != base.model_id
    assert plan(spec(env={"A": "1"})).model_id != base.model_id
    assert plan(spec(), location="europe-west4").model_id != base.model_id
    # Machine and replicas are the deployment's, not the Model's: the Model is reused.
    assert plan(spec(resources={"instance_type": "n1-standard-4", "min_replicas": 2})).model_id == base.model_id


def test_labels_name_the_deployment_and_the_hash_in_63_characters_beside_the_users_tags():
    p = plan(spec(tags={"team": "vision"}))
    assert p.labels == {"team": "vision", "cloudml-deployment": "fraud", "cloudml-model-hash": HASH.split(":")[1][:63]}
    assert len(p.labels["cloudml-model-hash"]) == 63


def test_machine_and_replicas_default_to_the_options_and_the_minimum():
    p = plan(spec())
    assert (p.machine_type, p.min_replicas, p.max_replicas) == ("n1-standard-2", 1, 1)
    p = plan(spec(resources={"instance_type": "n1-standard-4", "min_replicas": 2, "max_replicas": 5}))
    assert (p.machine_type, p.min_replicas, p.max_replicas) == ("n1-standard-4", 2, 5)


@pytest.mark.parametrize("fields, message", [
    ({"tags": {"Team": "vision"}}, "tag Team=vision cannot be a Google Cloud label"),
    ({"tags": {"team": "Vision Lab"}}, "cannot be a Google Cloud label"),
    ({"tags": {"k" * 64: "v"}}, "cannot be a Google Cloud label"),
    ({"tags": {"cloudml-deployment": "other"}}, "is reserved for cloudml"),
    ({"resources": {"min_replicas": 0}}, "keep at least one replica"),
    ({"resources": {"instance_type": "large"}}, "is not a Compute Engine machine type"),
])
def test_requests_vertex_cannot_serve_are_refused_with_what_was_wrong(fields, message):
    with pytest.raises(ConfigError) as refused:
        check_spec(spec(**fields), default_machine_type="n1-standard-2")
    assert message in refused.value.message and refused.value.hint


def test_valid_labels_pass():
    check_spec(spec(tags={"team": "vision", "cost_centre": "", "env-2": "prod_1"}), default_machine_type="n1-standard-2")


def test_a_bad_tag_is_refused_before_the_model_is_read_or_an_account_is_needed(tmp_path):
    deployer = cloudml.get_deployer("gcp", credentials=str(tmp_path / "no-such-key.json"))
    missing_model = DeploymentSpec(name="fraud", model=tmp_path / "absent.keras", provider="gcp", tags={"Team": "x"})
    with pytest.raises(ConfigError) as refused:
        deployer.deploy(missing_model)
    assert "cannot be a Google Cloud label" in refused.value.message


def test_a_first_deploy_takes_all_traffic_and_an_update_the_canary_share():
    assert canary_split({}, None) == {"0": 100}
    assert canary_split({}, 25) == {"0": 100}
    assert canary_split({"old": 100}, None) == {"0": 0, "old": 100}
    assert canary_split({"old": 100}, 25) == {"0": 25, "old": 75}
    # What serves keeps its proportions; a model without traffic gets none.
    assert canary_split({"a": 60, "b": 40, "c": 0}, 10) == {"0": 10, "a": 54, "b": 36}


def test_scaled_split_adds_up_to_the_total_with_the_remainder_on_the_largest():
    assert scaled({"a": 1, "b": 1, "c": 1}, 100) == {"a": 34, "b": 33, "c": 33}
    assert sum(scaled({"a": 70, "b": 20, "c": 10}, 75).values()) == 75
    assert scaled({"a": 99, "b": 1}, 50) == {"a": 50}  # a share rounded to 0 is dropped
    assert scaled({}, 100) == {}


def test_how_a_package_is_served_fits_in_labels_and_reads_back():
    from cloudml.contract import Manifest, Runtime, Signature
    from cloudml.emulators.gcp.vertex import LABEL_VALUE  # what Vertex accepts, as the emulator checks it
    from cloudml.providers.gcp.plan import served_labels, served_shown

    reason = "tf2onnx has no ONNX mapping for op Lgamma (opset 17); " + "and more detail " * 10
    runtime = Runtime(backend="tensorflow", framework="tensorflow", framework_version="2.21.0", fallback_reason=reason)
    manifest = Manifest(model_name="m", model_version=3, source_format="keras", source_name="m.keras", content_hash=HASH,
                        signature=Signature(inputs={}, outputs={}), runtime=runtime)
    labels = served_labels(manifest)
    assert all(LABEL_VALUE.match(v) for v in labels.values()), labels
    shown = served_shown(labels)
    assert shown["runtime"] == "tensorflow" and shown["framework"] == "tensorflow 2.21.0"
    assert shown["not_onnx_because"].startswith("tf2onnx has no onnx mapping for op lgamma opset 17") and shown["not_onnx_because"].endswith("...")
