"""The four places a Deployer deploys to, as the contract suite sees them: how to point the CLI and
the Python API at one, and how a user looks at what a deployment made there, with that place's
own tools (the local state folder and process table, boto3, the google-cloud clients, azure-ai-ml
and azure-storage-blob). Nothing here reads cloudml's internals."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import run_cli

AWS_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudml-serving:0.1.0"
GCP_IMAGE = "us-docker.pkg.dev/cloudml-emulator/cloudml/serving:0.1.0"
GCP_BUCKET = "cloudml-emulator-cloudml"  # the default: <project>-cloudml
AZURE_IMAGE = "cloudmlacr.azurecr.io/cloudml-serving:0.1.0"


class Target:
    name: str
    deploy_options: tuple[str, ...] = ()  # what a deploy there needs besides the model (the serving image)
    api_options: dict[str, Any] = {}
    # Deploying a model that cannot serve over a serving one: local loads it in a new server
    # (exit 3, the model); a cloud is asked to roll it out with the preflight skipped (exit 5).
    rollout_args: tuple[str, ...] = ("--skip-preflight",)
    failed_rollout_exit = 5
    artifact_keys: tuple[str, ...] = ()  # resources `delete` keeps for a redeploy (`--purge` takes them)
    # How each says why a rollout failed (the cause as that platform reports it).
    failed_update_says = ""
    failed_first_deploy_says = ""
    def __init__(self, home: Path, emulator: Any = None):
        self.home = home
        self.emulator = emulator

    def __repr__(self) -> str:
        return self.name

    def cli(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        return run_cli(*args, "--provider", self.name, home=self.home, **kwargs)

    def json(self, *args: Any, expect: int = 0) -> Any:
        result = self.cli(*args, "--output", "json")
        assert result.returncode == expect, f"cloudml {' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout)

    def deploy(self, model: Path, name: str, *args: str, expect: int = 0) -> Any:
        """`cloudml deploy`: its JSON when it succeeds, else the finished process (stderr says why)."""
        result = self.cli("deploy", model, "--name", name, *self.deploy_options, *args, "--output", "json")
        assert result.returncode == expect, f"exit {result.returncode}, expected {expect}\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout) if expect == 0 else result

    def deployer(self, **options: Any):
        import cloudml

        return cloudml.get_deployer(self.name, **{**self.api_options, **options})

    def resources(self, name: str) -> dict[str, list[str]]:
        """Everything this deployment has there, by kind."""
        raise NotImplementedError

    def serving_resources(self, name: str) -> dict[str, list[str]]:
        return {kind: found for kind, found in self.resources(name).items() if kind not in self.artifact_keys}

    # Clouds only: an endpoint made without cloudml, and a refusal by the service partway through a deploy.
    def foreign_endpoint(self, name: str) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def foreign_endpoint_intact(self, name: str) -> bool:
        raise NotImplementedError

    def refuse_next_rollout_for_quota(self) -> None:
        raise NotImplementedError


class Local(Target):
    name = "local"
    rollout_args = ()
    failed_rollout_exit = 3
    failed_update_says = "could not be loaded and warmed up"

    def __init__(self, home: Path, emulator: Any = None):
        super().__init__(home, emulator)
        self.api_options = {"home": home}

    def resources(self, name: str) -> dict[str, list[str]]:
        import cloudml

        folder = self.home / "deployments" / name
        processes = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
        return {
            "deployments": [d.name for d in cloudml.get_deployer("local", home=self.home).list() if d.name == name],
            "revisions": sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else [],
            "processes": processes,
        }


class Aws(Target):
    name = "aws"
    deploy_options = ("-o", f"image_uri={AWS_IMAGE}")
    api_options = {"image_uri": AWS_IMAGE, "poll_interval": 0.5}
    artifact_keys = ("objects",)
    failed_update_says = "did not pass the ping health check"
    failed_first_deploy_says = "failed to start (Failed)"

    def resources(self, name: str) -> dict[str, list[str]]:
        """Every SageMaker resource, scaling target and S3 object that carries this deployment's tag."""
        import boto3

        sm, s3 = boto3.client("sagemaker"), boto3.client("s3")

        def owned(arn):
            return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}.get("cloudml:deployment") == name

        scaling = boto3.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        found = {
            "models": [m["ModelName"] for m in sm.list_models()["Models"] if owned(m["ModelArn"])],
            "configs": [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"] if owned(c["EndpointConfigArn"])],
            "endpoints": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"] if owned(e["EndpointArn"])],
            "scaling": [t["ResourceId"] for t in scaling if t["ResourceId"].startswith(f"endpoint/{name}/")],
            "objects": [],
        }
        for bucket in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"cloudml/{name}/").get("Contents", []):
                found["objects"].append(f"{bucket}/{obj['Key']}")
        return found

    @contextlib.contextmanager
    def foreign_endpoint(self, name: str) -> Iterator[None]:
        import boto3

        sm = boto3.client("sagemaker")
        sm.create_model(ModelName=name, PrimaryContainer={"Image": AWS_IMAGE, "ModelDataUrl": "s3://nowhere/model.tar.gz"},
                        ExecutionRoleArn=self.emulator.role_arn)
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": "primary", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        try:
            yield
        finally:
            sm.delete_endpoint(EndpointName=name)
            sm.delete_endpoint_config(EndpointConfigName=name)
            sm.delete_model(ModelName=name)

    def foreign_endpoint_intact(self, name: str) -> bool:
        import boto3

        sm = boto3.client("sagemaker")
        models = [m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"].startswith(name)]
        return sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == name and models == [name]

    def refuse_next_rollout_for_quota(self) -> None:
        self.emulator.refuse_next("CreateEndpoint", code="ResourceLimitExceeded",
                                  message="The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances.")


class Gcp(Target):
    name = "gcp"
    deploy_options = ("-o", f"image_uri={GCP_IMAGE}")
    api_options = {"image_uri": GCP_IMAGE, "poll_interval": 0.5}
    artifact_keys = ("objects",)
    failed_update_says = "Model server exited unexpectedly"
    failed_first_deploy_says = "nothing was left behind"

    def vertex(self):
        """The high-level aiplatform SDK, initialised the way a user points it at the emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import aiplatform

        aiplatform.init(project=self.emulator.project, location=self.emulator.location, credentials=AnonymousCredentials(),
                        api_endpoint=self.emulator.url, api_transport="rest")
        return aiplatform

    def resources(self, name: str) -> dict[str, list[str]]:
        """Every Endpoint and Model labelled as this deployment's, and its GCS objects."""
        from google.cloud import storage

        vertex = self.vertex()
        query = f'labels.cloudml-deployment="{name}"'
        client = storage.Client()
        objects = []
        if client.lookup_bucket(GCP_BUCKET) is not None:
            objects = [b.name for b in client.list_blobs(GCP_BUCKET, prefix=f"cloudml/{name}/")]
        return {
            "endpoints": [e.name for e in vertex.Endpoint.list(filter=query)],
            "models": [m.name for m in vertex.Model.list(filter=query)],
            "objects": objects,
        }

    @contextlib.contextmanager
    def foreign_endpoint(self, name: str) -> Iterator[None]:
        theirs = self.vertex().Endpoint.create(display_name=name, endpoint_id=name)
        try:
            yield
        finally:
            theirs.delete()

    def foreign_endpoint_intact(self, name: str) -> bool:
        endpoint = self.vertex().Endpoint(name)
        return endpoint.display_name == name and not endpoint.labels and not endpoint.gca_resource.deployed_models

    def refuse_next_rollout_for_quota(self) -> None:
        self.emulator.refuse_next("DeployModel", status="RESOURCE_EXHAUSTED",
                                  message="The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_serving_cpus")


class Azure(Target):
    name = "azure"
    deploy_options = ("-o", f"image_uri={AZURE_IMAGE}")
    api_options = {"image_uri": AZURE_IMAGE, "poll_interval": 0.3}
    artifact_keys = ("blobs",)
    failed_update_says = "ResourceNotReady"
    failed_first_deploy_says = "failed to start"

    def __init__(self, home: Path, emulator: Any = None, ml: Any = None):
        super().__init__(home, emulator)
        self.ml = ml

    def blobs(self):
        """The workspace datastore's blob container in Azurite."""
        from azure.storage.blob import ContainerClient

        from cloudml.emulators.azure.azurite import ACCOUNT_KEY

        return ContainerClient(self.emulator.storage_url, self.ml.datastores.get_default().container_name, credential=ACCOUNT_KEY)

    def resources(self, name: str) -> dict[str, list[str]]:
        """Every endpoint, deployment, model version and blob this deployment left in the workspace."""
        found: dict[str, list[str]] = {"endpoints": [], "deployments": [], "models": [], "blobs": []}
        for endpoint in self.ml.online_endpoints.list():
            if (endpoint.tags or {}).get("cloudml-deployment") == name:
                found["endpoints"].append(endpoint.name)
                found["deployments"] += [d.name for d in self.ml.online_deployments.list(endpoint.name)]
        for container in self.ml.models.list():
            for version in self.ml.models.list(name=container.name):
                if (version.tags or {}).get("cloudml-deployment") == name:
                    found["models"].append(f"{version.name}:{version.version}")
        found["blobs"] = [b.name for b in self.blobs().list_blobs(name_starts_with=f"cloudml/{name}/")]
        return found

    @contextlib.contextmanager
    def foreign_endpoint(self, name: str) -> Iterator[None]:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        self.ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=name, auth_mode="key")).result()
        try:
            yield
        finally:
            self.ml.online_endpoints.begin_delete(name).result()

    def foreign_endpoint_intact(self, name: str) -> bool:
        endpoint = self.ml.online_endpoints.get(name)
        return endpoint.provisioning_state.lower() == "succeeded" and not endpoint.tags and not list(self.ml.online_deployments.list(name))

    def refuse_next_rollout_for_quota(self) -> None:
        self.emulator.refuse_next("onlineEndpoints/deployments/write", code="QuotaExceeded",
                                  message="Not enough quota available for Standard_DS3_v2 in SubscriptionId 00000000. Current usage/limit: 0/0.")


TARGETS: dict[str, type[Target]] = {"local": Local, "aws": Aws, "gcp": Gcp, "azure": Azure}
CLOUDS = ["aws", "gcp", "azure"]
