"""What only the `azure` provider does, against the offline Azure ML workspace (cloudml.emulators.azure:
ARM + Azure ML REST emulator, Azurite for blobs, real serving processes), through the CLI and the
Python API, with the seed CNN: the resources and settings a deploy makes, how an update and a
canary move traffic, keys and tokens, resumed waits, options, the emulator's own rules. What every
provider promises (redeploys, failed rollouts, refusals, foreign endpoints, missing names) is in
tests/contract. Resources are checked with a plain azure-ai-ml MLClient and
azure-storage-blob, the way a user would look at their workspace."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from conftest import REPO, rows_close, run_cli

pytestmark = pytest.mark.slow

IMAGE = "cloudmlacr.azurecr.io/cloudml-serving:0.1.0"
NOTHING = {"endpoints": [], "deployments": [], "models": [], "blobs": []}


def deploy(model, name, *args, home, expect=0):
    result = run_cli("deploy", model, "--name", name, "--provider", "azure", "-o", f"image_uri={IMAGE}", *args, "--output", "json", home=home)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout) if expect == 0 else result


def tagged(ml, blobs, name: str) -> dict[str, list[str]]:
    """Every endpoint, deployment, model version and blob this deployment left in the workspace."""
    found = {"endpoints": [], "deployments": [], "models": [], "blobs": []}
    for endpoint in ml.online_endpoints.list():
        if (endpoint.tags or {}).get("cloudml-deployment") == name:
            found["endpoints"].append(endpoint.name)
            found["deployments"] += [d.name for d in ml.online_deployments.list(endpoint.name)]
    for container in ml.models.list():
        for version in ml.models.list(name=container.name):
            if (version.tags or {}).get("cloudml-deployment") == name:
                found["models"].append(f"{version.name}:{version.version}")
    found["blobs"] = [b.name for b in blobs.list_blobs(name_starts_with=f"cloudml/{name}/")]
    return found


def assert_role_covers(calls: list[dict[str, str]]) -> set[str]:
    """Every Azure ML action cloudml took is granted by deploy_templates/azure-custom-role.json."""
    import fnmatch

    role = json.loads((REPO / "deploy_templates" / "azure-custom-role.json").read_text())
    allowed = [a.lower() for a in role["Actions"]]
    made = {c["action"] for c in calls if "cloudml/" in c["user_agent"]}
    missing = sorted(a for a in made if not any(fnmatch.fnmatchcase(a.lower(), p) for p in allowed))
    assert not missing, f"azure-custom-role.json lacks {missing}"
    return made


def test_what_a_deploy_makes_and_how_an_update_moves_traffic(azure_emulator, ml, blobs, seed_models, other_cnn, home):
    cnn = seed_models["cnn"]
    azure_emulator.calls(clear=True)
    created = deploy(cnn.path, "cnn-cli", "--min-replicas", "2", "-t", "team=vision", home=home)
    assert created["action"] == "created"
    dep = created["deployment"]
    assert dep["status"] == "healthy" and dep["provider"] == "azure" and dep["tags"] == {"team": "vision"}
    assert dep["endpoint_url"] == f"{azure_emulator.url}/endpoints/cnn-cli/score"
    model_hash = dep["model_hash"]

    # Endpoint, deployment, model version: the settings asked for, tagged, as MLClient sees them.
    endpoint = ml.online_endpoints.get("cnn-cli")
    assert endpoint.tags["cloudml-deployment"] == "cnn-cli" and endpoint.tags["cloudml-model-hash"] == model_hash and endpoint.tags["team"] == "vision"
    assert endpoint.auth_mode.lower() == "key"
    [deployment] = ml.online_deployments.list("cnn-cli")
    assert endpoint.traffic == {deployment.name: 100}
    assert deployment.name.startswith("cml-" + model_hash.split(":")[1][:10])
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 2)
    environment = ml.environments.get(*deployment.environment.split("/environments/")[1].split("/versions/"))
    assert environment.image == IMAGE
    assert environment.inference_config.readiness_route.path == "/ready" and environment.inference_config.scoring_route.path == "/score"
    [version] = ml.models.list(name="cloudml-cnn-cli")
    assert version.tags["cloudml-model-hash"] == model_hash and version.version == "1"
    assert version.path.endswith(f"/datastores/workspaceblobstore/paths/cloudml/cnn-cli/{model_hash.split(':')[1][:16]}/model/")
    assert any(b.endswith("/model/cloudml-manifest.json") for b in tagged(ml, blobs, "cnn-cli")["blobs"])

    # A new model: a second deployment, traffic moves, the old deployment and model version go.
    updated = deploy(other_cnn[0], "cnn-cli", "--min-replicas", "2", home=home)
    assert updated["action"] == "updated" and updated["deployment"]["model_hash"] != model_hash
    [new] = ml.online_deployments.list("cnn-cli")
    assert new.name != deployment.name and ml.online_endpoints.get("cnn-cli").traffic == {new.name: 100}
    result = run_cli("predict", "cnn-cli", json.dumps(cnn.instances), "--provider", "azure", "--output", "json", home=home)
    assert rows_close(json.loads(result.stdout)["predictions"], other_cnn[1])
    resources = tagged(ml, blobs, "cnn-cli")
    assert resources["models"] == ["cloudml-cnn-cli:2"] and resources["deployments"] == [new.name]

    logs = run_cli("logs", "cnn-cli", "--provider", "azure", "--tail", "50", home=home)
    assert logs.returncode == 0 and "loaded and warmed up" in logs.stdout  # from getLogs

    # delete: everything but the blobs (kept for a redeploy); --purge takes those too.
    assert run_cli("delete", "cnn-cli", "--provider", "azure", home=home).returncode == 0
    left = tagged(ml, blobs, "cnn-cli")
    assert {k: v for k, v in left.items() if k != "blobs"} == {k: [] for k in NOTHING if k != "blobs"}
    assert len({b.split("/")[2] for b in left["blobs"]}) == 2  # both versions' folders
    purged = run_cli("delete", "cnn-cli", "--provider", "azure", "--purge", home=home)
    assert purged.returncode == 0 and tagged(ml, blobs, "cnn-cli") == NOTHING
    made = assert_role_covers(azure_emulator.calls())
    assert {"Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write",
            "Microsoft.MachineLearningServices/workspaces/models/versions/delete"} <= made


def test_lifecycle_through_the_python_api_with_token_auth_and_a_canary(azure_emulator, ml, blobs, seed_models, other_cnn, home, monkeypatch):
    import cloudml
    from cloudml import DeploymentSpec

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    cnn = seed_models["cnn"]
    deployer = cloudml.get_deployer("azure", image_uri=IMAGE, auth_mode="aml_token", poll_interval=0.3, canary_percent=20, canary_wait_seconds=1)
    spec = DeploymentSpec(name="cnn-api", model=cnn.path)
    result = deployer.deploy(spec)
    assert result.action == "created" and result.deployment.status.serving
    assert ml.online_endpoints.get("cnn-api").auth_mode.lower() == "aml_token"
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, cnn.reference())
    assert deployer.deploy(spec).action == "unchanged"
    [old] = [d.name for d in ml.online_deployments.list("cnn-api")]

    # Traffic moves only once the new deployment has provisioned: watch it during the update.
    seen: list[tuple[str, dict]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            states = {d.name: str(d.provisioning_state).lower() for d in ml.online_deployments.list("cnn-api")}
            traffic = {d: share for d, share in ml.online_endpoints.get("cnn-api").traffic.items() if share}
            seen.append((json.dumps(states), traffic))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        updated = deployer.update(DeploymentSpec(name="cnn-api", model=other_cnn[0]))
    finally:
        done.set()
        watcher.join(10)
    assert updated.action == "updated"
    creating = [traffic for states, traffic in seen if "creating" in states]
    assert creating and all(traffic == {old: 100} for traffic in creating), seen
    canary = [traffic for _, traffic in seen if len(traffic) == 2]
    assert canary and canary[0][old] == 80  # 20% canary before the rest moved
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, other_cnn[1])

    # A refusal after the canary took its share: traffic goes back, the canary is removed.
    [live] = [d.name for d in ml.online_deployments.list("cnn-api")]

    def refuse_the_final_move():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len([v for v in ml.online_endpoints.get("cnn-api").traffic.values() if v]) == 2:
                azure_emulator.refuse_next("onlineEndpoints/write", code="Conflict", status=409,
                                           message="Another operation is in progress on the endpoint (fault injected).")
                return
            time.sleep(0.2)

    injector = threading.Thread(target=refuse_the_final_move, daemon=True)
    injector.start()
    slow_canary = cloudml.get_deployer("azure", image_uri=IMAGE, auth_mode="aml_token", poll_interval=0.3, canary_percent=20,
                                       canary_wait_seconds=4, preflight=False)
    with pytest.raises(cloudml.DeployFailed, match="Another operation is in progress"):
        slow_canary.deploy(DeploymentSpec(name="cnn-api", model=cnn.path))
    injector.join(10)
    azure_emulator.clear_faults()
    assert [d.name for d in ml.online_deployments.list("cnn-api")] == [live]
    assert {d: v for d, v in ml.online_endpoints.get("cnn-api").traffic.items() if v} == {live: 100}
    assert tagged(ml, blobs, "cnn-api")["models"] == ["cloudml-cnn-api:2"]
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, other_cnn[1])

    follow = deployer.logs("cnn-api", tail=3, follow=True)
    assert len([next(follow) for _ in range(3)]) == 3
    assert [d.name for d in deployer.list() if d.name == "cnn-api"] == ["cnn-api"]
    assert deployer.delete("cnn-api", purge=True) is True
    assert tagged(ml, blobs, "cnn-api") == NOTHING


def test_a_timed_out_wait_keeps_what_it_made_and_the_next_run_resumes(azure_emulator, ml, blobs, seed_models, home, monkeypatch):
    import cloudml
    from cloudml import DeploymentSpec
    from cloudml.providers.azure.deployer import WaitTimedOut

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    cnn = seed_models["cnn"]
    spec = DeploymentSpec(name="cnn-wait", model=cnn.path, runtime="tensorflow")  # seconds to start: the wait times out
    impatient = cloudml.get_deployer("azure", image_uri=IMAGE, wait_timeout=2.5, poll_interval=0.2, preflight=False)
    with pytest.raises(WaitTimedOut, match="run the same deploy again"):
        impatient.deploy(spec)
    [deployment] = ml.online_deployments.list("cnn-wait")
    assert str(deployment.provisioning_state).lower().endswith("creating")
    assert not {k: v for k, v in ml.online_endpoints.get("cnn-wait").traffic.items() if v}  # nothing routed to it yet
    resumed = cloudml.get_deployer("azure", image_uri=IMAGE, poll_interval=0.3, preflight=False).deploy(spec)
    assert resumed.action == "created" and resumed.deployment.status.serving
    assert [d.name for d in ml.online_deployments.list("cnn-wait")] == [deployment.name]  # waited for, not recreated
    assert tagged(ml, blobs, "cnn-wait")["models"] == ["cloudml-cnn-wait:1"]
    assert rows_close(cloudml.get_deployer("azure").predict("cnn-wait", instances=cnn.instances).predictions, cnn.reference())
    assert cloudml.get_deployer("azure").delete("cnn-wait", purge=True) is True


def test_scoring_uri_needs_the_endpoint_key(azure_emulator, ml, seed_models, home):
    cnn = seed_models["cnn"]
    dep = deploy(cnn.path, "cnn-key", "--skip-preflight", home=home)["deployment"]
    url, body = dep["endpoint_url"], {"instances": cnn.instances[:2]}
    key = ml.online_endpoints.get_keys("cnn-key").primary_key
    assert requests.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.post(url, json=body).status_code == 401
    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == dep["details"]["live_deployment"]
    assert rows_close(answer.json()["predictions"], cnn.reference(cnn.instances[:2]))
    # A regenerated key replaces the old one at once.
    ml.online_endpoints.begin_regenerate_keys("cnn-key", key_type="primary").result()
    assert requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert run_cli("predict", "cnn-key", json.dumps(cnn.instances[:1]), "--provider", "azure", home=home).returncode == 0
    assert run_cli("delete", "cnn-key", "--provider", "azure", "--purge", home=home).returncode == 0


def test_bad_options_are_refused_before_anything_is_made(azure_emulator, ml, blobs, seed_models, home):
    model = seed_models["cnn"].path
    typo = deploy(model, "cnn-opts", "--instance-type", "Standard_DS3_v3", home=home, expect=2)
    assert "'Standard_DS3_v3' is not an Azure ML managed online endpoint instance type" in typo.stderr
    assert "Standard_DS3_v2" in typo.stderr  # the suggestion
    bad_sub = deploy(model, "cnn-opts", "-o", "subscription_id=my-subscription", home=home, expect=2)
    assert "is not an Azure subscription id" in bad_sub.stderr
    no_image = run_cli("deploy", model, "--name", "cnn-opts", "--provider", "azure", "-o", "build_image=false", home=home)
    assert no_image.returncode == 3 and "image_uri" in no_image.stderr  # no prebuilt image serves it: as on aws and gcp
    wrong_ws = deploy(model, "cnn-opts", "-o", "workspace=other-ws", "--skip-preflight", home=home, expect=2)
    assert "could not find the workspace" in wrong_ws.stderr and "workspace" in wrong_ws.stderr
    assert tagged(ml, blobs, "cnn-opts") == NOTHING


def test_the_emulator_refuses_what_azure_ml_refuses(azure_emulator, ml):
    from azure.ai.ml.entities import ManagedOnlineEndpoint, Model
    from azure.core.exceptions import HttpResponseError
    from azure.identity import DefaultAzureCredential

    # Bodies are checked against the SDK's own REST models.
    token = DefaultAzureCredential().get_token(f"{azure_emulator.url}/.default").token
    base = f"{azure_emulator.url}/subscriptions/{azure_emulator.subscription_id}/resourceGroups/{azure_emulator.resource_group}" \
           f"/providers/Microsoft.MachineLearningServices/workspaces/{azure_emulator.workspace}"
    put = requests.put(f"{base}/onlineEndpoints/raw-ep?api-version=2023-04-01", headers={"Authorization": f"Bearer {token}"},
                       json={"location": "eastus", "properties": {"authMode": "Key", "trafic": {}}})
    assert put.status_code == 400 and "trafic: unknown property" in put.json()["error"]["message"]
    missing = requests.put(f"{base}/onlineEndpoints/raw-ep?api-version=2023-04-01", headers={"Authorization": f"Bearer {token}"},
                           json={"location": "eastus", "properties": {}})
    assert missing.status_code == 400 and "authMode" in missing.json()["error"]["message"]
    assert requests.get(f"{base}/onlineEndpoints/raw-ep?api-version=2023-04-01").status_code == 401

    with pytest.raises(HttpResponseError, match="not found|ResourceNotFound"):
        ml.online_endpoints.get("never-made")
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="rules-ep", auth_mode="key")).result()
    try:
        endpoint = ml.online_endpoints.get("rules-ep")
        endpoint.traffic = {"ghost": 100}
        with pytest.raises(HttpResponseError, match="does not exist"):
            ml.online_endpoints.begin_create_or_update(endpoint).result()
        model = ml.models.create_or_update(Model(name="rules-model", version="1", path="azureml://datastores/workspaceblobstore/paths/x/"))
        with pytest.raises(HttpResponseError, match="cannot change"):
            ml.models.create_or_update(Model(name="rules-model", version="1", path="azureml://datastores/workspaceblobstore/paths/y/"))
        assert model.version == "1"
    finally:
        ml.online_endpoints.begin_delete("rules-ep").result()
        ml.models._model_versions_operation.delete(resource_group_name=azure_emulator.resource_group,
                                                   workspace_name=azure_emulator.workspace, name="rules-model", version="1")


def test_missing_azurite_gives_an_actionable_error(tmp_path):
    result = run_cli("emulator", "azure", env={"CLOUDML_AZURITE": str(tmp_path / "nope" / "azurite-blob")})
    assert result.returncode == 7
    assert "CLOUDML_AZURITE points at" in result.stderr and "npm install azurite" in result.stderr
