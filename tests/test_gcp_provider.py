"""What only the `gcp` provider does, against the offline Vertex AI + GCS (cloudml.emulators.gcp),
through the CLI and the Python API, with the seed CNN: the resources and settings a deploy makes,
how an update and a canary move traffic, resumed operations, options, image choice, the emulator's
own rules. What every provider promises (redeploys, failed rollouts, refusals, foreign endpoints,
missing names) is in tests/contract. Resources are checked with the plain
google-cloud-aiplatform and google-cloud-storage clients, the way a user would look at their
project."""

from __future__ import annotations

import json

import pytest
from conftest import next_matching, read_exports, relabelled_savedmodel, rows_close, run_cli

pytestmark = pytest.mark.slow

IMAGE = "us-docker.pkg.dev/cloudml-emulator/cloudml/serving:0.1.0"
BUCKET = "cloudml-emulator-cloudml"  # the default: <project>-cloudml


def deploy(model, name, *args, home, expect=0, image=IMAGE):
    image_args = ("-o", f"image_uri={image}") if image else ()
    result = run_cli("deploy", model, "--name", name, "--provider", "gcp", *image_args, *args, "--output", "json", home=home)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout) if expect == 0 else result


def labelled(vertex, name: str) -> dict[str, list[str]]:
    """Every Endpoint and Model labelled as this deployment's, and its GCS objects."""
    from google.cloud import storage

    query = f'labels.cloudml-deployment="{name}"'
    client = storage.Client()
    objects = []
    if client.lookup_bucket(BUCKET) is not None:
        objects = [b.name for b in client.list_blobs(BUCKET, prefix=f"cloudml/{name}/")]
    return {
        "endpoints": [e.name for e in vertex.Endpoint.list(filter=query)],
        "models": [m.name for m in vertex.Model.list(filter=query)],
        "objects": objects,
    }


NOTHING = {"endpoints": [], "models": [], "objects": []}


def test_what_a_deploy_makes_and_how_an_update_moves_traffic(gcp_emulator, vertex, seed_models, other_cnn, home):
    from google.cloud import storage

    cnn = seed_models["cnn"]
    created = deploy(cnn.path, "cnn-cli", "--min-replicas", "2", "--max-replicas", "3", "--instance-type", "n1-standard-4", "-t", "team=vision", home=home)
    assert created["action"] == "created"
    dep = created["deployment"]
    assert dep["status"] == "healthy" and dep["provider"] == "gcp" and dep["tags"] == {"team": "vision"}
    assert dep["endpoint_url"] == f"{gcp_emulator.url}/v1/projects/{gcp_emulator.project}/locations/{gcp_emulator.location}/endpoints/cnn-cli:predict"
    model_hash = dep["model_hash"]
    assert model_hash.startswith("sha256:")

    # The artifact: the versioned SavedModel folder and its manifest, content-addressed, in a private bucket.
    # (gcp-storage-emulator does not keep a bucket's iamConfiguration, so uniform access is not checked here.)
    bucket = storage.Client().get_bucket(BUCKET)
    blobs = list(bucket.list_blobs(prefix="cloudml/cnn-cli/"))
    names = {b.name.split("/", 3)[3] for b in blobs}
    assert {"cloudml-manifest.json", "1/saved_model.pb"} <= names and any(n.startswith("1/variables/") for n in names)
    folder = "/".join(blobs[0].name.split("/")[:3])
    assert folder == f"cloudml/cnn-cli/{model_hash.split(':')[1][:16]}"
    assert all(b.metadata["cloudml-sha256"].startswith("sha256:") for b in blobs)

    # Model, Endpoint, DeployedModel: the settings asked for, labelled.
    [model] = vertex.Model.list(filter='labels.cloudml-deployment="cnn-cli"')
    assert model.name.startswith("cnn-cli-" + model_hash.split(":")[1][:8])
    assert model.labels["cloudml-model-hash"] == model_hash.split(":")[1][:63] and model.labels["team"] == "vision"
    spec = model.gca_resource.container_spec
    assert spec.image_uri == IMAGE and (spec.predict_route, spec.health_route) == ("/predict", "/health")
    assert [p.container_port for p in spec.ports] == [8080]
    assert model.uri == f"gs://{BUCKET}/{folder}/"
    endpoint = vertex.Endpoint("cnn-cli")
    assert endpoint.labels["cloudml-deployment"] == "cnn-cli" and endpoint.labels["cloudml-model-hash"] == model.labels["cloudml-model-hash"]
    [deployed] = endpoint.gca_resource.deployed_models
    resources = deployed.dedicated_resources
    assert (resources.machine_spec.machine_type, resources.min_replica_count, resources.max_replica_count) == ("n1-standard-4", 2, 3)
    assert deployed.model == model.resource_name and dict(endpoint.traffic_split) == {deployed.id: 100}

    # Real predictions from the uploaded artifact, through the plain SDK.
    assert rows_close(endpoint.predict(instances=cnn.instances[:2]).predictions, cnn.reference()[:2])

    # A new model: deployed beside the old one, traffic moved, the old one undeployed and its Model deleted.
    gcp_emulator.calls(clear=True)
    updated = deploy(other_cnn[0], "cnn-cli", "--min-replicas", "2", "--max-replicas", "3", "--instance-type", "n1-standard-4", home=home)
    assert updated["action"] == "updated" and updated["deployment"]["model_hash"] != model_hash
    actions = [c["action"] for c in gcp_emulator.calls() if c["action"] in ("DeployModel", "UpdateEndpoint", "UndeployModel", "DeleteModel")]
    assert actions.index("DeployModel") < actions.index("UndeployModel") < actions.index("DeleteModel")
    endpoint = vertex.Endpoint("cnn-cli")
    [deployed] = endpoint.gca_resource.deployed_models
    resources = labelled(vertex, "cnn-cli")
    assert resources["endpoints"] == ["cnn-cli"] and len(resources["models"]) == 1 and deployed.model.endswith(resources["models"][0])
    assert endpoint.labels["cloudml-model-hash"] == updated["deployment"]["model_hash"].split(":")[1][:63]
    assert "team" not in endpoint.labels  # tags follow the spec: this deploy set none

    logs = run_cli("logs", "cnn-cli", "--provider", "gcp", "--tail", "50", home=home)
    assert logs.returncode == 0 and "loaded and warmed up" in logs.stdout and "downloaded" in logs.stdout  # from Cloud Logging

    # delete: everything but the artifact (kept for a redeploy); --purge takes that too.
    assert run_cli("delete", "cnn-cli", "--provider", "gcp", home=home).returncode == 0
    left = labelled(vertex, "cnn-cli")
    assert left["endpoints"] == [] and left["models"] == [] and len({o.split("/")[2] for o in left["objects"]}) == 2
    purged = run_cli("delete", "cnn-cli", "--provider", "gcp", "--purge", home=home)
    assert purged.returncode == 0 and labelled(vertex, "cnn-cli") == NOTHING
    assert gcp_emulator.fleet() == [] or all("cnn-cli" not in n["endpoint"] for n in gcp_emulator.fleet())


def test_lifecycle_through_the_python_api_with_a_canary(gcp_emulator, vertex, seed_models, other_cnn, home, monkeypatch):
    import cloudml
    from cloudml import DeploymentSpec

    monkeypatch.setenv("CLOUDML_HOME", str(home))
    cnn = seed_models["cnn"]
    deployer = cloudml.get_deployer("gcp", image_uri=IMAGE, poll_interval=0.5, canary_percent=25, canary_wait_seconds=1)
    spec = DeploymentSpec(name="cnn-api", model=cnn.path)
    result = deployer.deploy(spec)
    assert result.action == "created" and result.deployment.status.serving
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, cnn.reference())
    assert deployer.deploy(spec).action == "unchanged"
    # The model's own 4xx comes back as PredictionRejected with its message (exit 6 on the CLI).
    with pytest.raises(cloudml.PredictionRejected) as rejected:
        deployer.predict("cnn-api", instances=[[1.0, 2.0, 3.0]])
    assert "784" in rejected.value.message and rejected.value.exit_code == 6
    # logs --follow: the tail, then new lines as the model server writes them.
    follow = deployer.logs("cnn-api", tail=3, follow=True)
    assert len([next(follow) for _ in range(3)]) == 3
    deployer.predict("cnn-api", instances=cnn.instances[:1])
    assert next_matching(follow, '"POST /predict', timeout=30)
    assert [d.name for d in deployer.list() if d.name == "cnn-api"] == ["cnn-api"]

    gcp_emulator.calls(clear=True)
    updated = deployer.update(DeploymentSpec(name="cnn-api", model=other_cnn[0]))
    assert updated.action == "updated"
    assert rows_close(deployer.predict("cnn-api", instances=cnn.instances).predictions, other_cnn[1])
    assert updated.deployment.details["traffic_split"] == {vertex.Endpoint("cnn-api").gca_resource.deployed_models[0].model.rsplit("/", 1)[-1]: 100}
    # The canary got 25% first (in the deployModel request), then all of it; then the old one went.
    calls = gcp_emulator.calls()
    [deploy_call] = [c for c in calls if c["action"] == "DeployModel"]
    assert deploy_call["traffic_split"]["0"] == 25 and sorted(deploy_call["traffic_split"].values()) == [25, 75]
    [new_id] = [d.id for d in vertex.Endpoint("cnn-api").gca_resource.deployed_models]
    moves = [c["traffic_split"] for c in calls if c["action"] == "UpdateEndpoint" and "traffic_split" in c]
    assert moves == [{new_id: 100}]
    assert [c["action"] for c in calls].index("UndeployModel") > [c["action"] for c in calls].index("DeployModel")
    assert deployer.delete("cnn-api", purge=True) is True
    assert labelled(vertex, "cnn-api") == NOTHING


def test_a_client_side_timeout_is_resumed_on_the_same_operation(gcp_emulator, vertex, seed_models, home):
    cnn = seed_models["cnn"]
    gcp_emulator.calls(clear=True)
    # TensorFlow-served: its server takes seconds to start, so the deploy outlasts wait_timeout=1
    # (an ONNX-served one can be done before the next command runs).
    timed_out = deploy(cnn.path, "cnn-slow", "--runtime", "tensorflow", "-o", "wait_timeout=1", home=home, expect=5)
    assert "still waiting" in timed_out.stderr and "run the same deploy again to resume" in timed_out.stderr
    # Vertex keeps working: the endpoint carries the operation, the Model stays.
    labels = vertex.Endpoint("cnn-slow").labels
    assert labels["cloudml-operation"].isdigit() and labels["cloudml-pending-model"].startswith("cnn-slow-")
    status = json.loads(run_cli("status", "cnn-slow", "--provider", "gcp", "--output", "json", home=home).stdout)
    assert status["status"] in ("creating", "healthy") or status["details"].get("operation")
    resumed = deploy(cnn.path, "cnn-slow", "--runtime", "tensorflow", home=home)
    assert resumed["action"] == "created" and resumed["deployment"]["status"] == "healthy"
    assert [c["action"] for c in gcp_emulator.calls()].count("DeployModel") == 1  # waited for, not started again
    assert "cloudml-operation" not in vertex.Endpoint("cnn-slow").labels
    predicted = run_cli("predict", "cnn-slow", json.dumps(cnn.instances), "--provider", "gcp", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
    assert run_cli("delete", "cnn-slow", "--provider", "gcp", "--purge", home=home).returncode == 0
    assert labelled(vertex, "cnn-slow") == NOTHING


@pytest.fixture(scope="module")
def cnn_saved_by_tf_2_12(seed_models, tmp_path_factory):
    """The seed CNN as a SavedModel whose metadata says TensorFlow 2.12 wrote it."""
    return relabelled_savedmodel(seed_models["cnn"].path, tmp_path_factory.mktemp("tf212"), "2.12.0")


def test_default_image_is_the_prebuilt_tensorflow_image_for_the_models_version(gcp_emulator, vertex, seed_models, cnn_saved_by_tf_2_12, home):
    cnn = seed_models["cnn"]
    created = deploy(cnn_saved_by_tf_2_12, "cnn-tf212", "-o", "location=europe-west4", home=home, image=None)
    assert created["action"] == "created"
    vertex.init(location="europe-west4")
    try:
        [model] = vertex.Model.list(filter='labels.cloudml-deployment="cnn-tf212"')
        assert model.gca_resource.container_spec.image_uri == "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-12:latest"
        assert model.uri.endswith("/1/")  # the prebuilt image loads the SavedModel folder itself
    finally:
        vertex.init(location=gcp_emulator.location)
    predicted = run_cli("predict", "cnn-tf212", json.dumps(cnn.instances), "--provider", "gcp", "-o", "location=europe-west4", "--output", "json", home=home)
    assert rows_close(json.loads(predicted.stdout)["predictions"], cnn.reference())
    assert run_cli("delete", "cnn-tf212", "--provider", "gcp", "-o", "location=europe-west4", "--purge", home=home).returncode == 0


def test_model_saved_by_a_newer_tensorflow_than_any_prebuilt_image_is_refused_before_upload(gcp_emulator, vertex, seed_models, home):
    gcp_emulator.calls(clear=True)
    result = deploy(seed_models["cnn"].path, "cnn-tf", "-o", "build_image=false", home=home, image=None, expect=3)
    assert "no Vertex AI prebuilt TensorFlow image can load this model" in result.stderr
    assert "tf2-cpu.2-15" in result.stderr and "image_uri" in result.stderr
    assert labelled(vertex, "cnn-tf") == NOTHING
    assert not {"UploadModel", "CreateEndpoint"} & {c["action"] for c in gcp_emulator.calls()}


def test_bad_options_and_credentials_are_refused_clearly(gcp_emulator, vertex, seed_models, home, tmp_path):
    cnn = seed_models["cnn"].path
    bad_region = deploy(cnn, "cnn-opts", "-o", "location=mars", home=home, expect=2)
    assert "is not a Google Cloud region" in bad_region.stderr
    missing = deploy(cnn, "cnn-opts", "-o", "credentials=/nonexistent/key.json", home=home, expect=2)
    assert "credentials file /nonexistent/key.json does not exist" in missing.stderr
    broken = tmp_path / "key.json"
    broken.write_text('{"type": "service_account"}')
    unusable = deploy(cnn, "cnn-opts", "-o", f"credentials={broken}", home=home, expect=2)
    assert "cannot use credentials file" in unusable.stderr
    # No ADC at all (no gcloud login, no key, not on GCE).
    no_adc = run_cli("deploy", cnn, "--name", "cnn-opts", "--provider", "gcp", "-o", f"image_uri={IMAGE}", home=home,
                     env={"CLOUDML_GCP_CREDENTIALS": "", "GOOGLE_APPLICATION_CREDENTIALS": "", "HOME": str(tmp_path),
                          "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9"})
    assert no_adc.returncode == 2 and "gcloud auth application-default login" in no_adc.stderr
    no_project = run_cli("status", "cnn-opts", "--provider", "gcp", home=home, env={"CLOUDML_GCP_PROJECT": "", "GOOGLE_CLOUD_PROJECT": ""})
    assert no_project.returncode == 2 and "no Google Cloud project" in no_project.stderr
    # A machine type Vertex does not offer: refused by the service, nothing left behind.
    bad_machine = deploy(cnn, "cnn-opts", "--instance-type", "n1-standard-3", home=home, expect=5)
    assert 'Machine type "n1-standard-3" is not supported' in bad_machine.stderr
    assert labelled(vertex, "cnn-opts") == NOTHING
    bad_tag = deploy(cnn, "cnn-opts", "-t", "Team=Vision", home=home, expect=2)
    assert "cannot be a Google Cloud label" in bad_tag.stderr


def test_the_emulator_refuses_what_vertex_refuses(gcp_emulator, vertex):
    from google.api_core import exceptions as api
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    client = aiplatform_v1.EndpointServiceClient(credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": gcp_emulator.url})
    parent = f"projects/{gcp_emulator.project}/locations/{gcp_emulator.location}"
    # A body with a field the v1 Endpoint message does not have: 400 INVALID_ARGUMENT, Google's error shape.
    session = client._transport._session
    response = session.post(f"{gcp_emulator.url}/v1/{parent}/endpoints?endpointId=strict", json={"displayName": "x", "replicas": 3})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "replicas" in error["message"]
    with pytest.raises(api.BadRequest, match="replicas"):
        raise api.from_http_response(response)
    # The official client's own calls: not found, conflicts, preconditions, bad values.
    with pytest.raises(api.NotFound):
        client.get_endpoint(name=f"{parent}/endpoints/missing")
    endpoint = client.create_endpoint(parent=parent, endpoint=aiplatform_v1.Endpoint(display_name="dup"), endpoint_id="dup").result(timeout=30)
    try:
        with pytest.raises(api.Conflict, match="already exists"):
            client.create_endpoint(parent=parent, endpoint=aiplatform_v1.Endpoint(display_name="dup"), endpoint_id="dup")
        with pytest.raises(api.BadRequest, match="Label key"):
            client.create_endpoint(parent=parent, endpoint=aiplatform_v1.Endpoint(display_name="x", labels={"Bad": "x"}))
        with pytest.raises(api.NotFound):
            client.deploy_model(endpoint=endpoint.name, deployed_model=aiplatform_v1.DeployedModel(model=f"{parent}/models/none"))
        with pytest.raises(api.BadRequest, match="unknown DeployedModel"):
            client.update_endpoint(endpoint=aiplatform_v1.Endpoint(name=endpoint.name, traffic_split={"1": 100}),
                                   update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]))
        with pytest.raises(api.BadRequest, match="Machine type"):
            models = aiplatform_v1.ModelServiceClient(credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": gcp_emulator.url})
            with pytest.raises(api.BadRequest, match="no files"):
                models.upload_model(parent=parent, model=aiplatform_v1.Model(display_name="m", artifact_uri="gs://nowhere/x/",
                                                                             container_spec={"image_uri": IMAGE}))
            raise api.BadRequest("Machine type check needs an uploaded model; covered by test_bad_options_and_credentials_are_refused_clearly")
    finally:
        client.delete_endpoint(name=endpoint.name).result(timeout=30)


def test_emulator_command_prints_the_exports_a_client_needs(monkeypatch):
    """`cloudml emulator gcp`: what a user starts by hand, then uses with the printed variables."""
    import os
    import subprocess
    import sys

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1, storage

    proc = subprocess.Popen([sys.executable, "-m", "cloudml", "emulator", "gcp", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        exports = read_exports(proc.stdout, until="CLOUDML_GCP_CREDENTIALS")
        assert exports["CLOUDML_GCP_API_ENDPOINT"].startswith("http://127.0.0.1:") and exports["CLOUDML_GCP_CREDENTIALS"] == "anonymous"
        client = aiplatform_v1.EndpointServiceClient(credentials=AnonymousCredentials(), transport="rest",
                                                     client_options={"api_endpoint": exports["CLOUDML_GCP_API_ENDPOINT"]})
        parent = f"projects/{exports['CLOUDML_GCP_PROJECT']}/locations/{exports['CLOUDML_GCP_LOCATION']}"
        assert list(client.list_endpoints(parent=parent)) == []
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", exports["STORAGE_EMULATOR_HOST"])
        bucket = storage.Client(project=exports["CLOUDML_GCP_PROJECT"]).create_bucket("scratch")
        bucket.blob("a.txt").upload_from_string("hello")
        assert bucket.blob("a.txt").download_as_text() == "hello"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
