"""What every provider promises, written once and run against local and the three emulated clouds
(`-k local`, `-k aws`, ... picks one): the CLI and Python API behave the same wherever a model
goes. What only one provider does (its resource layout, its update mechanics, its options) is
tested in tests/test_<provider>_provider.py."""

from __future__ import annotations

import json
import re

import pytest
from conftest import rows_close, run_cli
from file_opens import FileOpens

pytestmark = pytest.mark.slow

CNN_INPUTS = 784  # what the seed CNN takes per instance


def predictions(target, name, instances) -> list:
    result = target.cli("predict", name, json.dumps(instances), "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["predictions"]


def test_deploy_predict_redeploy_update_and_delete(target, seed_models, other_cnn):
    cnn = seed_models["cnn"]
    name = "contract-life"
    created = target.deploy(cnn.path, name, "-t", "team=vision")
    assert created["action"] == "created"
    dep = created["deployment"]
    assert (dep["name"], dep["provider"], dep["status"], dep["tags"]) == (name, target.name, "healthy", {"team": "vision"})
    assert dep["model_hash"].startswith("sha256:") and dep["endpoint_url"]
    assert rows_close(predictions(target, name, cnn.instances), cnn.reference())

    # A request the model cannot take: refused with the model's reason (exit 6), and it keeps serving.
    wrong = target.cli("predict", name, json.dumps([[1.0, 2.0, 3.0]]), "--output", "json")
    assert wrong.returncode == 6, wrong.stdout + wrong.stderr
    assert json.loads(wrong.stdout)["error"] == "PredictionRejected" and str(CNN_INPUTS) in wrong.stderr
    made = target.resources(name)

    # The same model again changes nothing.
    again = target.deploy(cnn.path, name, "-t", "team=vision")
    assert again["action"] == "unchanged" and again["deployment"]["model_hash"] == dep["model_hash"]
    assert target.resources(name) == made

    # A new model: it serves at the same URL, and what the old one had is gone (only stored artifacts are kept).
    updated = target.deploy(other_cnn[0], name)
    assert updated["action"] == "updated" and updated["deployment"]["model_hash"] != dep["model_hash"]
    assert updated["deployment"]["endpoint_url"] == dep["endpoint_url"]
    assert rows_close(predictions(target, name, cnn.instances), other_cnn[1])
    after = target.serving_resources(name)
    assert {kind: len(found) for kind, found in after.items()} == {kind: len(made[kind]) for kind in after}, (made, after)

    status = target.json("status", name)
    assert (status["status"], status["model_hash"]) == ("healthy", updated["deployment"]["model_hash"])
    assert name in [d["name"] for d in target.json("list")]
    logs = target.cli("logs", name, "--tail", "200")
    assert logs.returncode == 0 and "loaded and warmed up" in logs.stdout

    # delete: nothing serves any more; --purge also takes the stored artifacts; again, nothing to do.
    assert target.json("delete", name) == {"name": name, "deleted": True}
    assert target.cli("status", name).returncode == 4
    assert name not in [d["name"] for d in target.json("list")]
    assert not any(target.serving_resources(name).values())
    assert target.cli("delete", name, "--purge").returncode == 0
    assert not any(target.resources(name).values())
    nothing = target.cli("delete", name)
    assert nothing.returncode == 0 and "nothing to delete" in nothing.stdout


def served_by(target, name) -> str:
    """The backend the serving process says it loaded the model with, from the deployment's log."""
    logs = target.cli("logs", name, "--tail", "500")
    assert logs.returncode == 0, logs.stderr
    loaded = re.findall(r"loaded and warmed up \(served by (\w+) ", logs.stdout)
    assert loaded, logs.stdout
    return loaded[-1]


def test_status_shows_how_the_model_is_served(target, seed_models, lgamma_model):
    name = "contract-runtime"
    # A model with an op ONNX has no mapping for: served by TensorFlow, and status says why.
    target.deploy(lgamma_model.parent, name)
    details = target.json("status", name)["details"]
    assert (details["runtime"], served_by(target, name)) == ("tensorflow", "tensorflow")
    assert details["framework"].startswith("tensorflow ") and "mapping for op lgamma" in details["not_onnx_because"].lower()

    # A seed model that converts: served by ONNX Runtime (the targets give the cloudml runtime image), no reason left.
    cnn = seed_models["cnn"]
    assert target.deploy(cnn.path, name)["action"] == "updated"
    details = target.json("status", name)["details"]
    assert (details["runtime"], served_by(target, name)) == ("onnx", "onnx")
    assert details["framework"].startswith("tensorflow ") and "not_onnx_because" not in details

    # The same model asked to run on TensorFlow: an update on every provider, and status says what serves.
    again = target.deploy(cnn.path, name, "--runtime", "tensorflow")
    assert again["action"] == "updated"
    details = target.json("status", name)["details"]
    assert (details["runtime"], served_by(target, name)) == ("tensorflow", "tensorflow")
    assert details["framework"].startswith("tensorflow ") and "not_onnx_because" not in details

    # Deleted (the stored artifacts stay) and deployed again with --runtime tensorflow: TensorFlow serves.
    assert target.cli("delete", name).returncode == 0
    switched = target.deploy(cnn.path, name, "--runtime", "tensorflow")
    details = target.json("status", name)["details"]
    assert (switched["action"], details["runtime"], served_by(target, name)) == ("created", "tensorflow", "tensorflow")
    assert target.cli("delete", name, "--purge").returncode == 0


def test_a_package_made_once_deploys_with_the_runtime_it_was_packaged_for(target, seed_models, tmp_path):
    """CI packages a model once (`cloudml package`) and deploys that archive wherever it goes: it
    serves the model's predictions with the backend it was packaged for, which a deploy does not
    decide again, and deploying the same archive again changes nothing."""
    cnn = seed_models["cnn"]
    name = "contract-package"
    packaged = run_cli("package", cnn.path, "--out", tmp_path / "package", "--runtime", "tensorflow", "--output", "json", home=target.home)
    assert packaged.returncode == 0, packaged.stderr
    archive = json.loads(packaged.stdout)["archive"]
    created = target.deploy(archive, name)
    assert (created["action"], created["deployment"]["status"]) == ("created", "healthy")
    assert (target.json("status", name)["details"]["runtime"], served_by(target, name)) == ("tensorflow", "tensorflow")
    assert rows_close(predictions(target, name, cnn.instances), cnn.reference())
    made = target.resources(name)
    again = target.deploy(archive, name)
    assert again["action"] == "unchanged" and target.resources(name) == made
    assert target.cli("delete", name, "--purge").returncode == 0
    assert not any(target.resources(name).values())


def test_a_deploy_reads_the_model_once(target, seed_models, tmp_path):
    """A model of many GB is read once per deploy: copied while it is hashed, then planned,
    packaged and served from that copy. Every process's opens of the model's files are counted
    (inotify), the detached server's included; an unchanged deploy reads it once too."""
    cnn = seed_models["cnn"]
    name = "contract-read-once"
    model = tmp_path / "cnn_savedmodel"
    cnn.keras_model().export(str(model), verbose=False)
    files = sorted(p for p in model.rglob("*") if p.is_file())
    assert any(p.parent.name == "variables" for p in files)  # the weights are files of their own
    for expected_action in ("created", "unchanged"):
        with FileOpens(model) as opens:
            deployed = target.deploy(model, name)
        assert deployed["action"] == expected_action
        assert {str(p.relative_to(model)): opens.counts()[p] for p in files} == {str(p.relative_to(model)): 1 for p in files}
    assert rows_close(predictions(target, name, cnn.instances), cnn.reference())
    assert target.cli("delete", name, "--purge").returncode == 0


def test_a_new_model_that_cannot_serve_leaves_the_old_one_serving_and_nothing_behind(target, seed_models, unservable_model):
    cnn = seed_models["cnn"]
    name = "contract-keep"
    before = target.deploy(cnn.path, name)["deployment"]
    made = target.resources(name)
    failed = target.deploy(unservable_model, name, *target.rollout_args, expect=target.failed_rollout_exit)
    assert target.failed_update_says in failed.stderr and "this model cannot serve" in failed.stderr  # why, and the new server's log tail
    assert "previous" in failed.stderr  # ... and that the previous version still serves
    status = target.json("status", name)
    assert (status["status"], status["model_hash"]) == ("healthy", before["model_hash"])
    assert rows_close(predictions(target, name, cnn.instances), cnn.reference())
    assert target.resources(name) == made
    assert target.cli("delete", name, "--purge").returncode == 0


def test_a_model_that_cannot_serve_is_refused_before_anything_is_made(target, unservable_model):
    failed = target.deploy(unservable_model, "contract-broken", expect=3)
    assert "this model cannot serve" in failed.stderr
    assert not any(target.resources("contract-broken").values())
    assert "contract-broken" not in [d["name"] for d in target.json("list")]


def test_a_missing_deployment_is_reported_the_same_way_everywhere(target, seed_models):
    name = "contract-never-made"
    for command in ("status", "predict"):
        args = (command, name) if command == "status" else (command, name, json.dumps(seed_models["cnn"].instances[:1]))
        result = target.cli(*args, "--output", "json")
        assert result.returncode == 4, (command, result.stdout, result.stderr)
        error = json.loads(result.stdout)
        assert (error["error"], error["exit_code"]) == ("DeploymentNotFound", 4) and name in error["message"], error
        assert set(error) <= {"error", "message", "exit_code", "hint"} and name in result.stderr
    assert target.cli("logs", name).returncode == 4
    assert target.json("delete", name) == {"name": name, "deleted": False}
    # The Python API: the same answers as exceptions and values.
    import cloudml

    deployer = target.deployer()
    assert deployer.delete(name) is False
    with pytest.raises(cloudml.DeploymentNotFound):
        deployer.get(name)
    with pytest.raises(cloudml.DeploymentNotFound):
        deployer.update(cloudml.DeploymentSpec(name=name, model=seed_models["cnn"].path))
    assert not any(target.resources(name).values())


def test_a_rollout_that_fails_in_the_cloud_leaves_nothing_and_shows_the_log(cloud, unservable_model):
    failed = cloud.deploy(unservable_model, "contract-fails", "--skip-preflight", expect=5)
    assert cloud.failed_first_deploy_says in failed.stderr
    assert "this model cannot serve" in failed.stderr  # the container's log, fetched from the cloud's logging
    assert not any(cloud.resources("contract-fails").values())


def test_a_refusal_midway_leaves_no_orphans_and_a_rerun_converges(cloud, seed_models):
    cnn = seed_models["cnn"]
    cloud.refuse_next_rollout_for_quota()
    failed = cloud.deploy(cnn.path, "contract-quota", expect=5)
    assert "quota increase" in failed.stderr
    assert not any(cloud.resources("contract-quota").values())
    created = cloud.deploy(cnn.path, "contract-quota")
    assert created["action"] == "created" and created["deployment"]["status"] == "healthy"
    assert rows_close(predictions(cloud, "contract-quota", cnn.instances[:2]), cnn.reference(cnn.instances[:2]))
    assert cloud.cli("delete", "contract-quota", "--purge").returncode == 0


def test_an_endpoint_cloudml_did_not_create_is_never_touched(cloud, seed_models):
    with cloud.foreign_endpoint("theirs"):
        refused = cloud.deploy(seed_models["cnn"].path, "theirs", expect=2)
        assert "was not created by cloudml" in refused.stderr
        assert cloud.cli("delete", "theirs").returncode == 4
        assert cloud.cli("status", "theirs").returncode == 4
        assert cloud.foreign_endpoint_intact("theirs")
        assert not any(cloud.resources("theirs").values())
