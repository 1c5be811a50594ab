"""The `azure` provider: Azure ML managed online endpoints.

One cloudml deployment is one ManagedOnlineEndpoint of the same name. Each model version runs as
a ManagedOnlineDeployment named after the model's content hash (and the serving settings), so a
re-run finds what an earlier run made and the same model twice changes nothing. An update is
blue/green: the new deployment is created next to the live one, traffic moves only once it has
provisioned (all at once or canary first), then the old deployment and the model version
registered for it go. Everything cloudml makes is tagged `cloudml-deployment` /
`cloudml-model-hash`; cloudml never touches an endpoint without its tag.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cloudml.errors import ConfigError, DeployFailed, DeploymentNotFound, EndpointUnavailable, PredictionRejected
from cloudml.packaging import inspect_source, source_hash
from cloudml.preflight.prepare import prepare_model
from cloudml.providers.azure import artifacts, logs
from cloudml.providers.azure.environment import check_endpoint_name, check_instance_type, serving_environment
from cloudml.providers.azure.options import AzureOptions
from cloudml.providers.azure.session import azure_errors, error_message, is_not_found, ml_client
from cloudml.providers.base import Deployer
from cloudml.providers.common import WaitTimedOut, short_hash, wait_while_busy
from cloudml.results import Deployment, DeploymentStatus, DeployResult, Prediction, utcnow
from cloudml.spec import DeploymentSpec

TAG_DEPLOYMENT = "cloudml-deployment"
TAG_HASH = "cloudml-model-hash"
TAG_VERSION = "cloudml-model-version"
BUSY = ("creating", "updating", "deleting", "provisioning")
LOG_TAIL_LINES = 40
STATUS = {
    "succeeded": DeploymentStatus.HEALTHY,
    "creating": DeploymentStatus.CREATING,
    "provisioning": DeploymentStatus.CREATING,
    "updating": DeploymentStatus.UPDATING,
    "deleting": DeploymentStatus.DELETING,
    "failed": DeploymentStatus.FAILED,
    "canceled": DeploymentStatus.FAILED,
}


def _state(resource: Any) -> str:
    """provisioning_state as a lower-case word (the SDK returns enums or strings)."""
    value = getattr(resource, "provisioning_state", None)
    value = getattr(value, "value", value)
    return str(value or "").lower()


@contextlib.contextmanager
def _sdk_quiet() -> Iterator[None]:
    """azure-ai-ml's pollers print progress dots on stdout, which would corrupt `--output json`."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@dataclass(frozen=True)
class Plan:
    """What a deploy asks for, resolved to Azure ML names."""

    name: str
    model_hash: str
    model_name: str
    deployment_name: str
    instance_type: str
    instance_count: int

    @property
    def hash_hex(self) -> str:
        return self.model_hash.split(":")[-1]

    @property
    def blob_prefix(self) -> str:
        return f"cloudml/{self.name}/{self.hash_hex[:16]}/model"


class AzureMLDeployer(Deployer):
    provider = "azure"
    Options = AzureOptions
    options: AzureOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._ml = None
        self._pollers: dict[str, Any] = {}

    @property
    def ml(self):
        if self._ml is None:
            missing = [f for f in ("subscription_id", "resource_group", "workspace") if not getattr(self.options, f)]
            if missing:
                raise ConfigError(
                    f"the azure provider needs {', '.join(missing)}",
                    hint="pass -o subscription_id=... -o resource_group=... -o workspace=..., set them under azure: in cloudml.yaml, "
                         "or export CLOUDML_AZURE_SUBSCRIPTION_ID / _RESOURCE_GROUP / _WORKSPACE (`az ml workspace list` shows yours)",
                )
            with azure_errors("connecting to the Azure ML workspace", error=ConfigError):
                self._ml = ml_client(subscription_id=self.options.subscription_id, resource_group=self.options.resource_group,
                                     workspace=self.options.workspace, resource_manager_url=self.options.resource_manager_url,
                                     user_agent=f"cloudml/{_version()}")
        return self._ml

    # --- deploy ---------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec) -> DeployResult:
        # The SDK's pollers run in threads that print progress dots on stdout: keep stdout quiet
        # for the whole run, and let the pollers finish before it is handed back.
        with _sdk_quiet():
            try:
                return self._deploy(spec)
            except WaitTimedOut:
                self._pollers.clear()  # Azure ML is still at it: no point waiting here
                raise
            finally:
                for poller in self._pollers.values():
                    with contextlib.suppress(Exception):
                        poller.wait(timeout=5)
                self._pollers.clear()

    def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        check_endpoint_name(spec.name)
        if not self.options.image_uri and not self.options.environment:
            raise ConfigError(
                "the azure provider needs the image to serve with",
                hint="build and push the cloudml runtime (`cloudml package MODEL --container`, then `az acr build`) and pass "
                     "-o image_uri=<registry>.azurecr.io/cloudml-serving:<tag>, or pass -o environment=azureml:<name>:<version>",
            )
        source = inspect_source(spec.model)
        with self.progress.step(f"hashing {source.display_name}"):
            model_hash = source_hash(source)
        plan = self._plan(spec, model_hash)
        endpoint = self._endpoint(spec.name)
        if endpoint is not None and (endpoint.tags or {}).get(TAG_DEPLOYMENT) != spec.name:
            raise ConfigError(
                f"an Azure ML online endpoint named {spec.name!r} already exists and was not created by cloudml",
                hint="cloudml never takes over endpoints it did not make: choose another --name",
            )
        deployments: dict[str, Any] = {}
        live = None
        if endpoint is not None:
            endpoint = self._settle_endpoint(endpoint)
            deployments = {d.name: d for d in self._deployments(spec.name)}
            live = self._live_deployment(endpoint)
            current = deployments.get(plan.deployment_name)
            if live == plan.deployment_name and _state(current) == "succeeded" and _state(endpoint) == "succeeded":
                self._tag_endpoint(endpoint, spec, plan, version=None)
                return DeployResult(action="unchanged", deployment=self.get(spec.name))

        work = Path(self.options.work_dir or Path(os.environ.get("CLOUDML_HOME") or Path.home() / ".cloudml") / "azure-packages") / spec.name / plan.hash_hex[:16]
        checks = " and probing it locally (preflight)" if self.options.preflight else ""
        with self.progress.step(f"packaging {source.display_name}{checks}"):
            packaged = prepare_model(source, work, name=spec.name, version=spec.model_version, probe=self.options.preflight)

        created: list[tuple[str, str]] = []  # what this run made, undone in reverse if it fails
        container = None
        first = endpoint is None or live is None  # nothing served yet (or an earlier run timed out)
        try:
            datastore, container = artifacts.container_client(self.ml, self.options.storage_url)
            with self.progress.step(f"uploading the model to datastore {datastore} at {plan.blob_prefix}"):
                if artifacts.upload_folder(container, packaged.folder, plan.blob_prefix, metadata={"cloudml_deployment": spec.name, "cloudml_sha256": plan.hash_hex}):
                    created.append(("blobs", plan.blob_prefix))
            model, new_version = self._register_model(spec, plan, artifacts.datastore_path(datastore, plan.blob_prefix), packaged.manifest.model_version)
            if new_version:
                created.append(("model", model.version))
            if endpoint is None:
                endpoint = self._create_endpoint(spec, plan, version=packaged.manifest.model_version)
                created.append(("endpoint", spec.name))
            existing = deployments.get(plan.deployment_name)
            if existing is not None and _state(existing) in BUSY:
                self.progress.note(f"deployment {plan.deployment_name} is already {_state(existing)} (an earlier run); waiting for it")
            elif existing is None or _state(existing) != "succeeded":
                if existing is not None:  # a failed leftover of an earlier run
                    self._delete_deployment(spec.name, plan.deployment_name)
                self._create_deployment(spec, plan, model)
                created.append(("deployment", plan.deployment_name))
            self._check_provisioned(spec.name, plan, live=live, state=self._wait_deployment(spec.name, plan.deployment_name))
            self._move_traffic(spec, plan, live=live, version=packaged.manifest.model_version)
        except WaitTimedOut:
            raise
        except Exception:
            self._undo(created, endpoint_name=spec.name, model_name=plan.model_name, container=container, live=live)
            raise
        self._remove_previous(spec.name, keep_deployment=plan.deployment_name, keep_version=model.version, model_name=plan.model_name)
        shutil.rmtree(work, ignore_errors=True)  # kept only while a re-run could reuse it
        return DeployResult(action="created" if first else "updated", deployment=self.get(spec.name))

    def _plan(self, spec: DeploymentSpec, model_hash: str) -> Plan:
        resources = spec.resources
        instance_type = resources.instance_type or self.options.instance_type
        check_instance_type(instance_type)
        if resources.max_replicas is not None:
            raise ConfigError(
                "the azure provider does not set up autoscaling",
                hint="drop --max-replicas and set the instance count with --min-replicas or -o instance_count=N "
                     "(autoscale rules for online endpoints live in Azure Monitor)",
            )
        count = max(self.options.instance_count, resources.min_replicas, 1)
        hex_ = model_hash.split(":")[-1]
        serving = self.options.environment or self.options.image_uri
        # A deployment's settings are part of its identity: another instance type or image is a
        # new deployment (blue/green), the same ones are "unchanged".
        key = short_hash(instance_type, count, serving, sorted(spec.env.items()))
        return Plan(name=spec.name, model_hash=model_hash, model_name=f"cloudml-{spec.name}",
                    deployment_name=f"cml-{hex_[:10]}-{key[:5]}", instance_type=instance_type, instance_count=count)

    def _settle_endpoint(self, endpoint: Any) -> Any:
        if _state(endpoint) not in BUSY:
            return endpoint
        if _state(endpoint) == "deleting":
            raise DeployFailed(f"endpoint {endpoint.name} is being deleted", hint="wait until `cloudml status` says it is gone, then deploy again")
        name = endpoint.name

        def read():
            current = self._endpoint(name)
            return current, _state(current)

        return wait_while_busy(self.progress, f"for endpoint {name} to finish {_state(endpoint)}", read, busy=BUSY,
                               what=f"endpoint {name}", timeout=self.options.wait_timeout, interval=self.options.poll_interval,
                               hint="run the same deploy again to resume waiting")

    def _register_model(self, spec: DeploymentSpec, plan: Plan, path: str, model_version: int) -> tuple[Any, bool]:
        """The model version whose tag says it holds this hash, or a new one (True)."""
        from azure.ai.ml.constants import ListViewType
        from azure.ai.ml.entities import Model

        versions = self._model_versions(plan.model_name, view=ListViewType.ALL)
        for version in versions:
            if (version.tags or {}).get(TAG_HASH) == plan.model_hash and not getattr(version, "_is_archived", False):
                return version, False
        numbers = [int(v.version) for v in versions if str(v.version).isdigit()]
        model = Model(
            name=plan.model_name, version=str(max(numbers, default=0) + 1), path=path, type="custom_model",
            description=f"cloudml model for deployment {spec.name}",
            tags={**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash, TAG_VERSION: str(model_version)},
        )
        with self.progress.step(f"registering model {plan.model_name} version {model.version}"), azure_errors(f"registering model {plan.model_name}"):
            return self.ml.models.create_or_update(model), True

    def _model_versions(self, model_name: str, *, view=None) -> list[Any]:
        from azure.ai.ml.constants import ListViewType

        with azure_errors(f"listing the versions of model {model_name}", passthrough=Exception):
            try:
                return list(self.ml.models.list(name=model_name, list_view_type=view or ListViewType.ALL))
            except Exception as exc:  # noqa: BLE001 - a model that was never registered
                if is_not_found(exc):
                    return []
                with azure_errors(f"listing the versions of model {model_name}"):
                    raise

    def _create_endpoint(self, spec: DeploymentSpec, plan: Plan, *, version: int) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(
            name=spec.name, auth_mode=self.options.auth_mode, description=f"cloudml deployment {spec.name}",
            tags={**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash, TAG_VERSION: str(version)},
        )
        with self.progress.step(f"creating online endpoint {spec.name}"), azure_errors(f"creating online endpoint {spec.name}"), _sdk_quiet():
            return self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"endpoint {spec.name} to be created")

    def _finish(self, poller: Any, goal: str) -> Any:
        """The operation's result once Azure ML finished it; WaitTimedOut (nothing undone) when
        it takes longer than wait_timeout."""
        poller.wait(timeout=self.options.wait_timeout)
        if not poller.done():
            raise WaitTimedOut(f"Azure ML did not finish within {self.options.wait_timeout:.0f}s waiting for {goal}",
                               hint="Azure ML keeps working on it: run the same command again to resume")
        return poller.result()

    def _create_deployment(self, spec: DeploymentSpec, plan: Plan, model: Any) -> None:
        from azure.ai.ml.entities import ManagedOnlineDeployment

        environment = self.options.environment or serving_environment(self.options.image_uri)
        if isinstance(environment, str) and not environment.startswith("azureml:"):
            environment = f"azureml:{environment}"
        deployment = ManagedOnlineDeployment(
            name=plan.deployment_name, endpoint_name=spec.name, model=model.id, environment=environment,
            instance_type=plan.instance_type, instance_count=plan.instance_count, environment_variables=dict(spec.env),
            tags={**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash},
        )
        with azure_errors(f"creating deployment {plan.deployment_name} on endpoint {spec.name}"), _sdk_quiet():
            # The SDK's poller runs in the background (it holds the operation's error if it fails);
            # _wait_deployment watches the deployment itself, with progress and a deadline.
            self._pollers[plan.deployment_name] = self.ml.online_deployments.begin_create_or_update(deployment, skip_script_validation=True)

    def _wait_deployment(self, endpoint: str, name: str) -> Any:
        def read():
            deployment = self._deployment(endpoint, name)
            return deployment, _state(deployment)

        return wait_while_busy(
            self.progress, f"for deployment {name} to provision", read, busy=BUSY, what=f"deployment {name} of endpoint {endpoint}",
            timeout=self.options.wait_timeout, interval=self.options.poll_interval,
            hint=f"Azure ML keeps working on it: run the same deploy again to resume waiting, or watch `cloudml status {endpoint} --provider azure`",
        )

    def _check_provisioned(self, endpoint: str, plan: Plan, *, live: str | None, state: Any) -> None:
        if _state(state) == "succeeded":
            return
        reason = self._failure_reason(endpoint, plan.deployment_name)
        tail = self._log_tail(endpoint, plan.deployment_name)
        if live is None:
            raise DeployFailed(
                f"endpoint {endpoint} failed to start: deployment {plan.deployment_name} ended {_state(state) or 'failed'}: {reason}",
                hint="the log tail below is the container's; nothing was left behind, fix the model or image and deploy again",
                details=tail,
            )
        raise DeployFailed(
            f"the new deployment {plan.deployment_name} of {endpoint} failed ({reason}); traffic stays on the previous "
            f"deployment {live}, which keeps serving",
            hint=f"the log tail below is the new container's; see also `cloudml logs {endpoint} --provider azure`",
            details=tail,
        )

    def _failure_reason(self, endpoint: str, name: str) -> str:
        """The provisioning error Azure ML reported on the operation (ResourceNotReady, ...)."""
        poller = self._pollers.pop(name, None)
        if poller is None:  # a wait resumed from an earlier run: no operation to ask
            return "provisioning failed"
        try:
            with _sdk_quiet():
                poller.result(timeout=max(self.options.poll_interval, 10))
        except Exception as exc:  # noqa: BLE001 - the error is what we want
            return error_message(exc)
        return "provisioning failed"

    def _move_traffic(self, spec: DeploymentSpec, plan: Plan, *, live: str | None, version: int) -> None:
        endpoint = self._endpoint(spec.name)
        steps: list[dict[str, int]] = []
        if live and live != plan.deployment_name and self.options.canary_percent:
            steps.append({plan.deployment_name: self.options.canary_percent, live: 100 - self.options.canary_percent})
        steps.append({plan.deployment_name: 100})
        for index, traffic in enumerate(steps):
            if index:
                self._canary_wait(spec.name, plan.deployment_name)
                endpoint = self._endpoint(spec.name)
            endpoint.traffic = traffic
            endpoint.tags = {**(endpoint.tags or {}), **spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash, TAG_VERSION: str(version)}
            shares = ", ".join(f"{d} {p}%" for d, p in traffic.items())
            with self.progress.step(f"moving traffic of {spec.name}: {shares}"), azure_errors(f"moving the traffic of {spec.name}"), _sdk_quiet():
                self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"the traffic of {spec.name} to move")

    def _canary_wait(self, endpoint: str, name: str) -> None:
        deadline = time.monotonic() + self.options.canary_wait_seconds
        with self.progress.step(f"canary: {name} takes {self.options.canary_percent}% for {self.options.canary_wait_seconds:.0f}s"):
            while time.monotonic() < deadline:
                time.sleep(min(self.options.poll_interval, max(deadline - time.monotonic(), 0)))
                if _state(self._deployment(endpoint, name)) != "succeeded":
                    raise DeployFailed(f"the canary deployment {name} stopped being healthy", details=self._log_tail(endpoint, name))

    def _tag_endpoint(self, endpoint: Any, spec: DeploymentSpec, plan: Plan, *, version: int | None) -> None:
        wanted = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash}
        if version is not None:
            wanted[TAG_VERSION] = str(version)
        have = endpoint.tags or {}
        if all(have.get(k) == v for k, v in wanted.items()):
            return
        endpoint.tags = {**have, **wanted}
        with azure_errors(f"tagging endpoint {spec.name}"), _sdk_quiet():
            self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"endpoint {spec.name} to be tagged")

    def _undo(self, created: list[tuple[str, str]], *, endpoint_name: str, model_name: str, container: Any, live: str | None) -> None:
        """Remove what a failed run made, newest first, so nothing is orphaned. Best effort: the
        error that made the run fail is the one the user sees."""
        for kind, name in reversed(created):
            try:
                with self.progress.step(f"removing {kind} {name} after the failure"):
                    if kind == "deployment":
                        self._restore_traffic(endpoint_name, live, leaving=name)
                        self._delete_deployment(endpoint_name, name)
                    elif kind == "endpoint":
                        self._delete_endpoint(name)
                    elif kind == "model":
                        self._delete_model_version(model_name, name)
                    elif kind == "blobs" and container is not None:
                        artifacts.delete_prefix(container, name)
            except Exception as exc:  # noqa: BLE001 - report and keep undoing the rest
                self.progress.note(f"could not remove {kind} {name} after the failure: {exc}")

    def _restore_traffic(self, endpoint_name: str, live: str | None, *, leaving: str) -> None:
        """A canary that got a share before the run failed gives it back (Azure refuses to delete
        a deployment that still takes traffic)."""
        endpoint = self._endpoint(endpoint_name)
        if endpoint is None or not (endpoint.traffic or {}).get(leaving):
            return
        endpoint.traffic = {live: 100} if live else {}
        with azure_errors(f"moving the traffic of {endpoint_name} back to {live}"):
            self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"the traffic of {endpoint_name} to move back")

    def _remove_previous(self, endpoint: str, *, keep_deployment: str, keep_version: str, model_name: str) -> None:
        """After traffic moved: the old deployments, then the model versions cloudml registered
        for them (blobs stay for a redeploy until `delete --purge`)."""
        for deployment in self._deployments(endpoint):
            if deployment.name != keep_deployment and (deployment.tags or {}).get(TAG_DEPLOYMENT) == endpoint:
                with self.progress.step(f"deleting the previous deployment {deployment.name}"):
                    self._delete_deployment(endpoint, deployment.name)
        for version in self._model_versions(model_name):
            if str(version.version) != str(keep_version) and (version.tags or {}).get(TAG_DEPLOYMENT) == endpoint:
                self._delete_model_version(model_name, str(version.version))

    # --- reading --------------------------------------------------------------------------
    def _endpoint(self, name: str) -> Any | None:
        with azure_errors(f"reading online endpoint {name}", passthrough=Exception):
            try:
                return self.ml.online_endpoints.get(name)
            except Exception as exc:  # noqa: BLE001 - translated below
                if is_not_found(exc):
                    return None
                with azure_errors(f"reading online endpoint {name}"):
                    raise

    def _deployment(self, endpoint: str, name: str) -> Any | None:
        with azure_errors(f"reading deployment {name}", passthrough=Exception):
            try:
                return self.ml.online_deployments.get(name, endpoint)
            except Exception as exc:  # noqa: BLE001 - translated below
                if is_not_found(exc):
                    return None
                with azure_errors(f"reading deployment {name}"):
                    raise

    def _deployments(self, endpoint: str) -> list[Any]:
        with azure_errors(f"listing the deployments of {endpoint}", passthrough=Exception):
            try:
                return list(self.ml.online_deployments.list(endpoint))
            except Exception as exc:  # noqa: BLE001 - translated below
                if is_not_found(exc):
                    return []
                with azure_errors(f"listing the deployments of {endpoint}"):
                    raise

    @staticmethod
    def _live_deployment(endpoint: Any) -> str | None:
        traffic = {k: v for k, v in (endpoint.traffic or {}).items() if v}
        return max(traffic, key=traffic.get) if traffic else None

    def _owned_endpoint(self, name: str) -> Any:
        endpoint = self._endpoint(name)
        if endpoint is None:
            raise DeploymentNotFound(f"no Azure ML online endpoint named {name!r} in workspace {self.options.workspace}",
                                     hint="`cloudml list --provider azure` shows what cloudml deployed")
        if (endpoint.tags or {}).get(TAG_DEPLOYMENT) != name:
            raise DeploymentNotFound(f"Azure ML online endpoint {name!r} was not created by cloudml (no {TAG_DEPLOYMENT} tag)",
                                     hint="cloudml only manages what it created; pick another deployment name")
        return endpoint

    def get(self, name: str) -> Deployment:
        return self._to_deployment(self._owned_endpoint(name))

    def _to_deployment(self, endpoint: Any) -> Deployment:
        name = endpoint.name
        live = self._live_deployment(endpoint)
        deployments = {d.name: d for d in self._deployments(name)}
        current = deployments.get(live) if live else None
        endpoint_state = _state(endpoint)
        if endpoint_state in BUSY or endpoint_state == "failed":
            status = STATUS.get(endpoint_state, DeploymentStatus.UNHEALTHY)
        elif current is None:
            busy = [d for d in deployments.values() if _state(d) in BUSY]
            status = DeploymentStatus.CREATING if busy else DeploymentStatus.UNHEALTHY
        else:
            status = STATUS.get(_state(current), DeploymentStatus.UNHEALTHY)
            if status is DeploymentStatus.HEALTHY and any(_state(d) in BUSY for d in deployments.values()):
                status = DeploymentStatus.UPDATING
        tags = endpoint.tags or {}
        details: dict[str, Any] = {
            "endpoint_state": endpoint_state, "auth_mode": str(getattr(endpoint, "auth_mode", "") or ""),
            "traffic": dict(endpoint.traffic or {}), "live_deployment": live,
            "deployments": {n: _state(d) for n, d in deployments.items()}, "workspace": self.options.workspace,
        }
        if current is not None:
            details["instance_type"] = current.instance_type
            details["instance_count"] = current.instance_count
            details["model"] = current.model if isinstance(current.model, str) else getattr(current.model, "id", None)
        version = tags.get(TAG_VERSION)
        created = getattr(endpoint, "creation_context", None)
        return Deployment(
            name=name, provider=self.provider, status=status, endpoint_url=endpoint.scoring_uri,
            model_version=int(version) if version and version.isdigit() else None, model_hash=tags.get(TAG_HASH),
            created_at=getattr(created, "created_at", None) or utcnow(), updated_at=getattr(created, "last_modified_at", None) or utcnow(),
            tags={k: v for k, v in tags.items() if not k.startswith("cloudml-")}, details=details,
        )

    def list(self) -> list[Deployment]:
        with azure_errors("listing Azure ML online endpoints"):
            endpoints = list(self.ml.online_endpoints.list())
        return sorted((self._to_deployment(e) for e in endpoints if (e.tags or {}).get(TAG_DEPLOYMENT) == e.name), key=lambda d: d.name)

    def predict(self, name: str, *, instances: list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
        import requests

        endpoint = self._owned_endpoint(name)
        body: dict[str, Any] = {"instances": instances}
        if parameters:
            body["parameters"] = parameters
        with azure_errors(f"reading the credentials of endpoint {name}", error=EndpointUnavailable):
            credentials = self.ml.online_endpoints.get_keys(name)
        secret = getattr(credentials, "primary_key", None) or getattr(credentials, "access_token", None)
        started = time.perf_counter()
        try:
            response = requests.post(endpoint.scoring_uri, data=json.dumps(body), timeout=120,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
        except requests.RequestException as exc:
            raise EndpointUnavailable(f"cannot reach the scoring URI of {name}: {exc}") from None
        if response.status_code == 200:
            return Prediction(deployment=name, predictions=response.json()["predictions"], latency_ms=(time.perf_counter() - started) * 1000)
        message = _response_message(response)
        if response.status_code == 401:
            raise PredictionRejected(f"{name} refused the credentials: {message}", status_code=401,
                                     hint="the endpoint's keys may have been regenerated; check auth_mode and your role on the workspace")
        if 400 <= response.status_code < 500 and response.status_code != 424:
            raise PredictionRejected(f"{name} rejected the request: {message}", status_code=response.status_code)
        raise EndpointUnavailable(f"endpoint {name} is not serving ({response.status_code}): {message}",
                                  hint=f"`cloudml status {name} --provider azure` and `cloudml logs {name} --provider azure`")

    def logs(self, name: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        endpoint = self._owned_endpoint(name)
        deployment = self._live_deployment(endpoint) or next((d.name for d in self._deployments(name)), None)
        if deployment is None:
            return iter(())
        lines = logs.tail(self.ml, name, deployment, tail)
        if not follow:
            return iter(lines)
        return logs.follow(self.ml, name, deployment, first=lines, interval=min(self.options.poll_interval, 2.0))

    def _log_tail(self, endpoint: str, deployment: str) -> str:
        try:
            lines = logs.tail(self.ml, endpoint, deployment, LOG_TAIL_LINES)
        except Exception as exc:  # noqa: BLE001 - the failure matters more than its log
            return f"(could not read the container log: {exc})"
        return "\n".join(lines) if lines else f"(deployment {deployment} has written no log lines)"

    # --- delete ---------------------------------------------------------------------------
    def delete(self, name: str, *, purge: bool = False) -> bool:
        with _sdk_quiet():
            return self._delete(name, purge=purge)

    def _delete(self, name: str, *, purge: bool) -> bool:
        endpoint = self._endpoint(name)
        deleted = False
        if endpoint is not None:
            if (endpoint.tags or {}).get(TAG_DEPLOYMENT) != name:
                raise DeploymentNotFound(f"Azure ML online endpoint {name!r} was not created by cloudml; not deleting it")
            with self.progress.step(f"deleting online endpoint {name} and its deployments"):
                self._delete_endpoint(name)
            deleted = True
        model_name = f"cloudml-{name}"
        for version in self._model_versions(model_name):
            if (version.tags or {}).get(TAG_DEPLOYMENT) == name:
                self._delete_model_version(model_name, str(version.version))
                deleted = True
        if purge:
            _, container = artifacts.container_client(self.ml, self.options.storage_url)
            deleted = artifacts.delete_prefix(container, f"cloudml/{name}/") > 0 or deleted
        return deleted

    def _delete_endpoint(self, name: str) -> None:
        with azure_errors(f"deleting online endpoint {name}", passthrough=Exception), _sdk_quiet():
            try:
                self._finish(self.ml.online_endpoints.begin_delete(name=name), f"endpoint {name} to be deleted")
            except Exception as exc:  # noqa: BLE001 - translated below
                if not is_not_found(exc):
                    with azure_errors(f"deleting online endpoint {name}"):
                        raise

    def _delete_deployment(self, endpoint: str, name: str) -> None:
        with azure_errors(f"deleting deployment {name}", passthrough=Exception), _sdk_quiet():
            try:
                self._finish(self.ml.online_deployments.begin_delete(name=name, endpoint_name=endpoint), f"deployment {name} to be deleted")
            except Exception as exc:  # noqa: BLE001 - translated below
                if not is_not_found(exc):
                    with azure_errors(f"deleting deployment {name}"):
                        raise

    def _delete_model_version(self, model_name: str, version: str) -> None:
        """Workspace model versions have no delete in azure-ai-ml's public API (only archive):
        the SDK's generated REST client has the service's DELETE."""
        with azure_errors(f"deleting model {model_name} version {version}"):
            self.ml.models._model_versions_operation.delete(  # noqa: SLF001 - the REST operation behind the SDK
                resource_group_name=self.options.resource_group, workspace_name=self.options.workspace, name=model_name, version=version)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudml")
    except PackageNotFoundError:
        return "dev"


def _response_message(response: Any) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error or payload.get("message") or payload)
    return str(payload)[:500]
