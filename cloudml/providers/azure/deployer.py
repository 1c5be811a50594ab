"""The `azure` provider: Azure ML managed online endpoints.

One cloudml deployment is one ManagedOnlineEndpoint of the same name. Each model version runs as
a ManagedOnlineDeployment named after the model's content hash (and the serving settings), so a
re-run finds what an earlier run made and the same model twice changes nothing. An update is
blue/green: the new deployment is created next to the live one, traffic moves only once it has
provisioned (all at once or canary first), then the old deployment and the model version
registered for it go. Everything cloudml makes is tagged `cloudml-deployment` /
`cloudml-model-hash`; cloudml never touches an endpoint without its tag.

The deploy sequence and its failure rules are `CloudDeployer`'s; this module holds Azure's hooks.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cloudml.contract import Runtime
from cloudml.errors import ConfigError, DeployFailed, EndpointUnavailable, ModelError, PredictionRejected
from cloudml.providers.azure import artifacts, logs, workspace
from cloudml.providers.azure.environment import check_endpoint_name, serving_environment
from cloudml.providers.azure.options import AzureOptions
from cloudml.providers.azure.plan import (
    ARTIFACT_PREFIX,
    SERVED_TAGS,
    TAG_DEPLOYMENT,
    TAG_HASH,
    TAG_VERSION,
    AzurePlan,
    cloudml_tags,
    live_deployment,
    make_plan,
    model_name,
    served_shown,
    state,
    traffic_steps,
)
from cloudml.providers.azure.session import azure_errors, error_message, ml_client
from cloudml.providers.cloud import Action, CloudDeployer, RegistryTarget, Rollout, UndoJournal
from cloudml.providers.common import WaitTimedOut, artifact_prefix, tag_version, wait_while_busy
from cloudml.results import Deployment, DeploymentStatus, DeployResult, utcnow
from cloudml.spec import DeploymentSpec

__all__ = ["AzureEndpoint", "AzureMLDeployer", "WaitTimedOut"]

BUSY = ("creating", "updating", "deleting", "provisioning")
STATUS = {
    "succeeded": DeploymentStatus.HEALTHY,
    "creating": DeploymentStatus.CREATING,
    "provisioning": DeploymentStatus.CREATING,
    "updating": DeploymentStatus.UPDATING,
    "deleting": DeploymentStatus.DELETING,
    "failed": DeploymentStatus.FAILED,
    "canceled": DeploymentStatus.FAILED,
}


@dataclass
class AzureEndpoint:
    """An online endpoint; its deployments are listed when first asked for, then kept."""

    resource: Any  # the ManagedOnlineEndpoint
    list_deployments: Callable[[], list[Any]] = field(repr=False)

    @functools.cached_property
    def deployments(self) -> dict[str, Any]:
        return {d.name: d for d in self.list_deployments()}

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def tags(self) -> dict[str, str]:
        return self.resource.tags or {}

    @property
    def state(self) -> str:
        return state(self.resource)

    @property
    def live(self) -> str | None:
        return live_deployment(self.resource.traffic)

    @property
    def logged(self) -> str | None:
        """The deployment whose log `cloudml logs` shows: the live one, else any (None: none)."""
        return self.live or next(iter(self.deployments), None)


@contextlib.contextmanager
def _sdk_quiet() -> Iterator[None]:
    """azure-ai-ml's pollers print progress dots on stdout, which would corrupt `--output json`:
    deploy and delete run with stdout set aside."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class AzureMLDeployer(CloudDeployer[AzurePlan, AzureEndpoint]):
    provider = "azure"
    Options = AzureOptions
    options: AzureOptions
    endpoint_kind = "Azure ML online endpoint"
    ownership_mark = TAG_DEPLOYMENT
    log_name = "container log"

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
            subscription, group, name = self.options.subscription_id, self.options.resource_group, self.options.workspace
            assert subscription and group and name  # each was checked just above
            with azure_errors("connecting to the Azure ML workspace", error=ConfigError):
                self._ml = ml_client(subscription_id=subscription, resource_group=group,
                                     workspace=name, resource_manager_url=self.options.resource_manager_url,
                                     user_agent=f"cloudml/{_version()}")
        return self._ml

    # --- deploy ---------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec) -> DeployResult:
        # The SDK's pollers run in threads that print progress dots on stdout: keep stdout quiet
        # for the whole run, and let the pollers finish before it is handed back.
        with _sdk_quiet():
            try:
                return super().deploy(spec)
            except WaitTimedOut:
                self._pollers.clear()  # Azure ML is still at it: no point waiting here
                raise
            finally:
                for poller in self._pollers.values():
                    with contextlib.suppress(Exception):
                        poller.wait(timeout=5)
                self._pollers.clear()

    def check_request(self, spec: DeploymentSpec) -> None:
        check_endpoint_name(spec.name)
        if self.options.build_image is False and not (self.options.image_uri or self.options.environment):
            raise _no_prebuilt_image()  # Azure ML never has one: no need to read the model first

    def plan(self, spec: DeploymentSpec, model_hash: str) -> AzurePlan:
        return make_plan(spec, model_hash, self.options)

    def read_endpoint(self, name: str) -> AzureEndpoint | None:
        resource = workspace.endpoint(self.ml, name)
        return None if resource is None else self._as_endpoint(resource)

    def _as_endpoint(self, resource: Any) -> AzureEndpoint:
        return AzureEndpoint(resource, lambda: workspace.deployments(self.ml, resource.name))

    def owner(self, endpoint: AzureEndpoint) -> str | None:
        return endpoint.tags.get(TAG_DEPLOYMENT)

    def settle(self, endpoint: AzureEndpoint, plan: AzurePlan) -> AzureEndpoint:
        """An endpoint busy with an earlier change is waited for (one being deleted is refused)."""
        if endpoint.state not in BUSY:
            return endpoint
        if endpoint.state == "deleting":
            raise DeployFailed(f"endpoint {endpoint.name} is being deleted", hint="wait until `cloudml status` says it is gone, then deploy again")
        name = endpoint.name

        def read():
            current = workspace.endpoint(self.ml, name)
            return current, state(current)

        resource = wait_while_busy(self.progress, f"for endpoint {name} to finish {endpoint.state}", read, busy=BUSY,
                                   what=f"endpoint {name}", timeout=self.options.wait_timeout, interval=self.options.poll_interval,
                                   hint="run the same deploy again to resume waiting")
        return self._as_endpoint(resource)

    def is_unchanged(self, endpoint: AzureEndpoint, plan: AzurePlan) -> bool:
        """All traffic on this plan's deployment, provisioned: a canary an earlier run left half
        way is not (the resumed run moves the rest); its leftovers are removed by finish_interrupted_cleanup."""
        shares = {d: p for d, p in (endpoint.resource.traffic or {}).items() if p}
        return (shares == {plan.deployment_name: 100} and endpoint.state == "succeeded"
                and state(endpoint.deployments.get(plan.deployment_name)) == "succeeded")

    def refresh_tags(self, endpoint: AzureEndpoint, spec: DeploymentSpec, plan: AzurePlan) -> None:
        wanted = cloudml_tags(spec, plan)
        have = endpoint.tags
        if any(have.get(k) != v for k, v in wanted.items()):
            endpoint.resource.tags = {**have, **wanted}
            with azure_errors(f"tagging endpoint {spec.name}"):
                self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint.resource), f"endpoint {spec.name} to be tagged")

    def finish_interrupted_cleanup(self, endpoint: AzureEndpoint, plan: AzurePlan) -> None:
        """What an earlier run stopped after moving the traffic owes: the old deployments and model versions."""
        kept = next((v for v in workspace.model_versions(self.ml, plan.model_name) if (v.tags or {}).get(TAG_HASH) == plan.model_hash), None)
        self._retire(plan.name, plan, keep_model=str(kept.version) if kept is not None else None, deployments=endpoint.deployments.values())

    def prebuilt_image(self, plan: AzurePlan, tensorflow_version: str) -> str:
        """Azure ML has no TensorFlow inference image: only a configured environment serves
        without the cloudml serving image."""
        if self.options.environment:
            return self.options.environment
        raise _no_prebuilt_image()

    def registry_target(self) -> RegistryTarget:
        from cloudml.providers.azure import registry

        return registry.target(self.ml, self.options.workspace or "", resource_manager_url=self.options.resource_manager_url)

    def stage_artifact(self, rollout: Rollout[AzurePlan, AzureEndpoint]) -> str:
        plan = rollout.plan
        datastore, container = artifacts.container_client(self.ml, self.options.storage_url)
        with self.progress.step(f"uploading the model to datastore {datastore} at {plan.blob_prefix}"):
            metadata = {"cloudml_deployment": plan.name, "cloudml_sha256": plan.hash_hex}
            if artifacts.upload_folder(container, rollout.packaged.folder, plan.blob_prefix, metadata=metadata):
                self._undoable(rollout.journal, f"blobs {plan.blob_prefix}", lambda: artifacts.delete_prefix(container, plan.blob_prefix))
        return artifacts.datastore_path(datastore, plan.blob_prefix)

    def roll_out(self, rollout: Rollout[AzurePlan, AzureEndpoint]) -> Action:
        spec, plan, current, journal = rollout.spec, rollout.plan, rollout.current, rollout.journal
        version, runtime = rollout.packaged.manifest.model_version, rollout.packaged.manifest.runtime
        model = self._register_model(rollout)
        rollout.notes["model_version"] = str(model.version)
        if current is None:
            self._create_endpoint(spec, plan, version=version, runtime=runtime)
            self._undoable(journal, f"endpoint {spec.name}", lambda: self._delete_endpoint(spec.name))
        live = current.live if current else None  # None: nothing served yet (or an earlier run timed out)
        existing = current.deployments.get(plan.deployment_name) if current else None
        if existing is not None and state(existing) in BUSY:
            self.progress.note(f"deployment {plan.deployment_name} is already {state(existing)} (an earlier run); waiting for it")
        elif state(existing) != "succeeded":
            if existing is not None:  # a failed leftover of an earlier run
                self._delete_deployment(spec.name, plan.deployment_name)
            self._create_deployment(spec, plan, model, image=rollout.image)

            def remove_deployment() -> None:
                self._restore_traffic(spec.name, live, leaving=plan.deployment_name)
                self._delete_deployment(spec.name, plan.deployment_name)

            self._undoable(journal, f"deployment {plan.deployment_name}", remove_deployment)
        self._check_provisioned(spec.name, plan, live=live, deployment=self._wait_deployment(spec.name, plan.deployment_name))
        self._move_traffic(spec, plan, live=live, version=version, runtime=runtime)
        return "created" if live is None else "updated"

    def retire_previous(self, rollout: Rollout[AzurePlan, AzureEndpoint]) -> None:
        """The old deployments, then the model versions cloudml registered for them (blobs stay
        for a redeploy until `delete --purge`)."""
        self._retire(rollout.spec.name, rollout.plan, keep_model=rollout.notes["model_version"],
                     deployments=workspace.deployments(self.ml, rollout.spec.name))

    def _retire(self, name: str, plan: AzurePlan, *, keep_model: str | None, deployments: Any) -> None:
        for deployment in deployments:
            if deployment.name != plan.deployment_name and (deployment.tags or {}).get(TAG_DEPLOYMENT) == name:
                with self.progress.step(f"deleting the previous deployment {deployment.name}"):
                    self._delete_deployment(name, deployment.name)
        if keep_model is not None:
            self._delete_model_versions(name, keep=keep_model)

    def _undoable(self, journal: UndoJournal, what: str, undo: Callable[[], object]) -> None:
        def step() -> None:
            with self.progress.step(f"removing {what} after the failure"):
                undo()

        journal.record(what, step)

    def _register_model(self, rollout: Rollout[AzurePlan, AzureEndpoint]) -> Any:
        """The model version whose tag says it holds this hash, or a new one (undone on failure)."""
        from azure.ai.ml.entities import Model

        spec, plan = rollout.spec, rollout.plan
        versions = workspace.model_versions(self.ml, plan.model_name)
        for version in versions:
            if (version.tags or {}).get(TAG_HASH) == plan.model_hash and not getattr(version, "_is_archived", False):
                return version
        numbers = [int(v.version) for v in versions if str(v.version).isdigit()]
        model = Model(
            name=plan.model_name, version=str(max(numbers, default=0) + 1), path=rollout.artifact, type="custom_model",
            description=f"cloudml model for deployment {spec.name}",
            tags=cloudml_tags(spec, plan, version=rollout.packaged.manifest.model_version, runtime=rollout.packaged.manifest.runtime),
        )
        with self.progress.step(f"registering model {plan.model_name} version {model.version}"), azure_errors(f"registering model {plan.model_name}"):
            registered = self.ml.models.create_or_update(model)
        self._undoable(rollout.journal, f"model {plan.model_name} version {registered.version}",
                       lambda: self._delete_model_version(plan.model_name, str(registered.version)))
        return registered

    def _create_endpoint(self, spec: DeploymentSpec, plan: AzurePlan, *, version: int, runtime: Runtime) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(name=spec.name, auth_mode=self.options.auth_mode, description=f"cloudml deployment {spec.name}",
                                         tags=cloudml_tags(spec, plan, version=version, runtime=runtime))
        with self.progress.step(f"creating online endpoint {spec.name}"), azure_errors(f"creating online endpoint {spec.name}"):
            return self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"endpoint {spec.name} to be created")

    def _create_deployment(self, spec: DeploymentSpec, plan: AzurePlan, model: Any, *, image: str) -> None:
        from azure.ai.ml.entities import ManagedOnlineDeployment

        environment = self.options.environment or serving_environment(image)
        if isinstance(environment, str) and not environment.startswith("azureml:"):
            environment = f"azureml:{environment}"
        deployment = ManagedOnlineDeployment(
            name=plan.deployment_name, endpoint_name=spec.name, model=model.id, environment=environment,
            instance_type=plan.instance_type, instance_count=plan.instance_count, environment_variables=dict(spec.env),
            tags=cloudml_tags(spec, plan),
        )
        with azure_errors(f"creating deployment {plan.deployment_name} on endpoint {spec.name}"):
            # The SDK's poller runs in the background (it holds the operation's error if it fails);
            # _wait_deployment watches the deployment itself, with progress and a deadline.
            self._pollers[plan.deployment_name] = self.ml.online_deployments.begin_create_or_update(deployment, skip_script_validation=True)

    def _wait_deployment(self, endpoint: str, name: str) -> Any:
        def read():
            deployment = workspace.deployment(self.ml, endpoint, name)
            return deployment, state(deployment)

        return wait_while_busy(
            self.progress, f"for deployment {name} to provision", read, busy=BUSY, what=f"deployment {name} of endpoint {endpoint}",
            timeout=self.options.wait_timeout, interval=self.options.poll_interval,
            hint=f"Azure ML keeps working on it: run the same deploy again to resume waiting, or watch `cloudml status {endpoint} --provider azure`",
        )

    def _check_provisioned(self, endpoint: str, plan: AzurePlan, *, live: str | None, deployment: Any) -> None:
        ended = state(deployment)
        if ended == "succeeded":
            return
        reason = self._failure_reason(plan.deployment_name)
        tail = self._log_tail(endpoint, plan.deployment_name)
        if live is None:
            raise DeployFailed(
                f"endpoint {endpoint} failed to start: deployment {plan.deployment_name} ended {ended or 'failed'}: {reason}",
                hint="the log tail below is the container's; nothing was left behind, fix the model or image and deploy again",
                details=tail,
            )
        raise DeployFailed(
            f"the new deployment {plan.deployment_name} of {endpoint} failed ({reason}); traffic stays on the previous "
            f"deployment {live}, which keeps serving",
            hint=f"the log tail below is the new container's; see also `cloudml logs {endpoint} --provider azure`",
            details=tail,
        )

    def _failure_reason(self, name: str) -> str:
        """The provisioning error Azure ML reported on the operation (ResourceNotReady, ...)."""
        poller = self._pollers.pop(name, None)
        if poller is None:  # a wait resumed from an earlier run: no operation to ask
            return "provisioning failed"
        try:
            poller.result(timeout=max(self.options.poll_interval, 10))
        except Exception as exc:  # noqa: BLE001 - the error is what we want
            return error_message(exc)
        return "provisioning failed"

    def _move_traffic(self, spec: DeploymentSpec, plan: AzurePlan, *, live: str | None, version: int, runtime: Runtime) -> None:
        for index, traffic in enumerate(traffic_steps(plan.deployment_name, live, self.options.canary_percent)):
            if index:
                self._canary_wait(spec.name, plan.deployment_name)
            endpoint = workspace.endpoint(self.ml, spec.name)
            if endpoint is None:
                raise DeployFailed(f"endpoint {spec.name} disappeared while its traffic was moving")
            endpoint.traffic = traffic
            # The previous package's runtime tags go (a reason for not being ONNX would outlive it).
            kept = {k: v for k, v in (endpoint.tags or {}).items() if k not in SERVED_TAGS}
            endpoint.tags = {**kept, **cloudml_tags(spec, plan, version=version, runtime=runtime)}
            shares = ", ".join(f"{d} {p}%" for d, p in traffic.items())
            with self.progress.step(f"moving traffic of {spec.name}: {shares}"), azure_errors(f"moving the traffic of {spec.name}"):
                self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"the traffic of {spec.name} to move")

    def _canary_wait(self, endpoint: str, name: str) -> None:
        deadline = time.monotonic() + self.options.canary_wait_seconds
        with self.progress.step(f"canary: {name} takes {self.options.canary_percent}% for {self.options.canary_wait_seconds:.0f}s"):
            while time.monotonic() < deadline:
                time.sleep(min(self.options.poll_interval, max(deadline - time.monotonic(), 0)))
                if state(workspace.deployment(self.ml, endpoint, name)) != "succeeded":
                    raise DeployFailed(f"the canary deployment {name} stopped being healthy", details=self._log_tail(endpoint, name))

    def _restore_traffic(self, endpoint_name: str, live: str | None, *, leaving: str) -> None:
        """A canary that got a share before the run failed gives it back (Azure refuses to delete
        a deployment that still takes traffic)."""
        endpoint = workspace.endpoint(self.ml, endpoint_name)
        if endpoint is None or not (endpoint.traffic or {}).get(leaving):
            return
        endpoint.traffic = {live: 100} if live else {}
        with azure_errors(f"moving the traffic of {endpoint_name} back to {live}"):
            self._finish(self.ml.online_endpoints.begin_create_or_update(endpoint), f"the traffic of {endpoint_name} to move back")

    # --- reading --------------------------------------------------------------------------
    def location(self) -> str:
        return f"workspace {self.options.workspace}"

    def describe(self, endpoint: AzureEndpoint) -> Deployment:
        live = endpoint.live
        deployments = endpoint.deployments
        current = deployments.get(live) if live else None
        endpoint_state = endpoint.state
        if endpoint_state in BUSY or endpoint_state == "failed":
            status = STATUS.get(endpoint_state, DeploymentStatus.UNHEALTHY)
        elif current is None:
            busy = [d for d in deployments.values() if state(d) in BUSY]
            status = DeploymentStatus.CREATING if busy else DeploymentStatus.UNHEALTHY
        else:
            status = STATUS.get(state(current), DeploymentStatus.UNHEALTHY)
            if status is DeploymentStatus.HEALTHY and any(state(d) in BUSY for d in deployments.values()):
                status = DeploymentStatus.UPDATING
        resource, tags = endpoint.resource, endpoint.tags
        details: dict[str, Any] = {
            "endpoint_state": endpoint_state, "auth_mode": str(getattr(resource, "auth_mode", "") or ""),
            "traffic": dict(resource.traffic or {}), "live_deployment": live,
            "deployments": {n: state(d) for n, d in deployments.items()}, "workspace": self.options.workspace,
        }
        if current is not None:
            details["instance_type"] = current.instance_type
            details["instance_count"] = current.instance_count
            details["model"] = current.model if isinstance(current.model, str) else getattr(current.model, "id", None)
        details.update(served_shown(tags))
        created = getattr(resource, "creation_context", None)
        return Deployment(
            name=endpoint.name, provider=self.provider, status=status, endpoint_url=resource.scoring_uri,
            model_version=tag_version(tags.get(TAG_VERSION)), model_hash=tags.get(TAG_HASH),
            created_at=getattr(created, "created_at", None) or utcnow(), updated_at=getattr(created, "last_modified_at", None) or utcnow(),
            tags={k: v for k, v in tags.items() if not k.startswith("cloudml-")}, details=details,
        )

    def list_endpoints(self) -> builtins.list[tuple[str, AzureEndpoint]]:
        with azure_errors("listing Azure ML online endpoints"):
            return [(e.name, self._as_endpoint(e)) for e in self.ml.online_endpoints.list()]

    def connect(self, name: str) -> tuple[str, str | None]:
        """(the scoring URI, the key or token that calls it)."""
        endpoint = self.owned_endpoint(name).resource
        with azure_errors(f"reading the credentials of endpoint {name}", error=EndpointUnavailable):
            credentials = self.ml.online_endpoints.get_keys(name)
        return endpoint.scoring_uri, getattr(credentials, "primary_key", None) or getattr(credentials, "access_token", None)

    def invoke(self, name: str, body: dict[str, Any], connection: tuple[str, str | None]) -> builtins.list[Any]:
        import requests

        scoring_uri, secret = connection
        try:
            response = requests.post(scoring_uri, data=json.dumps(body), timeout=120,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
        except requests.RequestException as exc:
            raise EndpointUnavailable(f"cannot reach the scoring URI of {name}: {exc}") from None
        if response.status_code == 200:
            return response.json()["predictions"]
        message = _response_message(response)
        if response.status_code == 401:
            raise PredictionRejected(f"{name} refused the credentials: {message}", status_code=401,
                                     hint="the endpoint's keys may have been regenerated; check auth_mode and your role on the workspace")
        if 400 <= response.status_code < 500 and response.status_code != 424:
            raise PredictionRejected(f"{name} rejected the request: {message}", status_code=response.status_code)
        raise EndpointUnavailable(f"endpoint {name} is not serving ({response.status_code}): {message}",
                                  hint=f"`cloudml status {name} --provider azure` and `cloudml logs {name} --provider azure`")

    def tail_logs(self, endpoint: AzureEndpoint, lines: int) -> builtins.list[str]:
        deployment = endpoint.logged
        return [] if deployment is None else logs.tail(self.ml, endpoint.name, deployment, lines)

    def follow_logs(self, endpoint: AzureEndpoint, lines: int) -> Iterator[str]:
        deployment = endpoint.logged
        if deployment is None:
            return iter(())
        first = logs.tail(self.ml, endpoint.name, deployment, lines)
        return logs.follow(self.ml, endpoint.name, deployment, first=first, interval=min(self.options.poll_interval, 2.0))

    def _log_tail(self, endpoint: str, deployment: str) -> str:
        return self.log_details(lambda lines: logs.tail(self.ml, endpoint, deployment, lines),
                                empty=f"(deployment {deployment} has written no log lines)")

    # --- delete ---------------------------------------------------------------------------
    def delete(self, name: str, *, purge: bool = False) -> bool:
        with _sdk_quiet():
            return super().delete(name, purge=purge)

    def delete_endpoint(self, endpoint: AzureEndpoint) -> None:
        self._delete_endpoint(endpoint.name)  # its deployments go with it

    def delete_leftovers(self, name: str) -> bool:
        return self._delete_model_versions(name)

    def purge_artifacts(self, name: str) -> bool:
        _, container = artifacts.container_client(self.ml, self.options.storage_url)
        return artifacts.delete_prefix(container, artifact_prefix(ARTIFACT_PREFIX, name)) > 0

    def _delete_model_versions(self, name: str, *, keep: str | None = None) -> bool:
        """The model versions cloudml registered for the deployment, but `keep`; True when any went."""
        model, deleted = model_name(name), False
        for version in workspace.model_versions(self.ml, model):
            if str(version.version) != keep and (version.tags or {}).get(TAG_DEPLOYMENT) == name:
                self._delete_model_version(model, str(version.version))
                deleted = True
        return deleted

    def _finish(self, poller: Any, goal: str) -> Any:
        return workspace.finish(poller, goal, timeout=self.options.wait_timeout)

    def _delete_endpoint(self, name: str) -> None:
        workspace.delete_endpoint(self.ml, name, timeout=self.options.wait_timeout)

    def _delete_deployment(self, endpoint: str, name: str) -> None:
        workspace.delete_deployment(self.ml, endpoint, name, timeout=self.options.wait_timeout)

    def _delete_model_version(self, model: str, version: str) -> None:
        ml = self.ml  # checks the workspace settings
        assert self.options.resource_group and self.options.workspace
        workspace.delete_model_version(ml, model, version, resource_group=self.options.resource_group, workspace=self.options.workspace)


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


def _no_prebuilt_image() -> ModelError:
    return ModelError("no Azure ML prebuilt image can serve this model: Azure ML has no TensorFlow inference image or curated environment",
                      hint="leave build_image unset (or true) to build the cloudml serving image into the workspace's registry, "
                           "or pass -o image_uri=IMAGE or -o environment=azureml:<name>:<version>")
