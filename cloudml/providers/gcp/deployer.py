"""The `gcp` provider: Vertex AI online prediction endpoints, as the hooks of the shared cloud
deploy (cloudml.providers.cloud).

One deployment is one Vertex Endpoint whose id is the deployment name, serving one Model (two
while an update moves traffic). Model ids carry the model's content hash, so a re-run finds what
an earlier run uploaded and the same model twice changes nothing. Everything cloudml makes is
labelled `cloudml-deployment` / `cloudml-model-hash` (the endpoint its hash only once a run
completes: `unchanged` reads it); `list` and `delete` go by the deployment label.

Deploying a model to an endpoint is a long-running operation (10-30 minutes on Vertex). Its id is
kept in the endpoint's `cloudml-operation` label while it runs, so a run that stops waiting (the
wait_timeout, Ctrl-C) leaves it running and the next run waits for that operation instead of
starting over.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cloudml.errors import DeployFailed, DeploymentNotFound, EndpointUnavailable, PredictionRejected
from cloudml.providers.cloud import Action, CloudDeployer, RegistryTarget, Rollout, UndoJournal, serving_choice
from cloudml.providers.common import artifact_prefix, container_error, tag_version
from cloudml.providers.gcp import artifacts, logs
from cloudml.providers.gcp.images import is_prebuilt, tensorflow_image
from cloudml.providers.gcp.options import GcpOptions
from cloudml.providers.gcp.plan import (
    LABEL_DEPLOYMENT,
    LABEL_HASH,
    LABEL_OPERATION,
    LABEL_PENDING_MODEL,
    LABEL_VERSION,
    OWN_LABELS,
    SERVED_LABELS,
    VertexPlan,
    canary_split,
    check_spec,
    plan_deployment,
    served_labels,
    served_shown,
)
from cloudml.providers.gcp.resources import VertexResources, short
from cloudml.providers.gcp.session import GcpSession, error_message, error_status, gcp_errors
from cloudml.results import Deployment, DeploymentStatus, utcnow
from cloudml.spec import DeploymentSpec

SERVING_PORT = 8080


@dataclass(frozen=True)
class VertexEndpoint:
    """A Vertex Endpoint as read (the aiplatform_v1.Endpoint), and whether this run finished a
    deployModel of this plan that an earlier run left running: then the deploy is not
    `unchanged`, even when the endpoint now serves exactly the plan."""

    proto: Any
    resumed: bool = False

    @property
    def name(self) -> str:
        return self.proto.name  # the resource name: projects/P/locations/L/endpoints/NAME


class VertexDeployer(CloudDeployer[VertexPlan, VertexEndpoint]):
    provider = "gcp"
    Options = GcpOptions
    options: GcpOptions
    endpoint_kind = "Vertex AI endpoint"
    ownership_mark = LABEL_DEPLOYMENT
    log_name = "Cloud Logging entries"

    # Made on first use: loading credentials is not needed to check options or a spec.
    @cached_property
    def gcp(self) -> GcpSession:
        return GcpSession(self.options)

    @cached_property
    def vertex(self) -> VertexResources:
        return VertexResources(self.gcp, self.options, self.progress)

    # --- hooks: deciding --------------------------------------------------------------------
    def check_request(self, spec: DeploymentSpec) -> None:
        check_spec(spec, default_machine_type=self.options.machine_type)

    def plan(self, spec: DeploymentSpec, model_hash: str) -> VertexPlan:
        return plan_deployment(spec, model_hash, default_machine_type=self.options.machine_type,
                               image_uri=self.options.image_uri, location=self.options.location, serving=serving_choice(spec, self.options))

    def read_endpoint(self, name: str) -> VertexEndpoint | None:
        proto = self.vertex.get_endpoint(self.vertex.endpoint_name(name), missing_ok=True)
        return None if proto is None else VertexEndpoint(proto)

    def owner(self, endpoint: VertexEndpoint) -> str | None:
        return endpoint.proto.labels.get(LABEL_DEPLOYMENT)

    def settle(self, endpoint: VertexEndpoint, plan: VertexPlan) -> VertexEndpoint:
        """A deployModel operation an earlier run left running is waited for (when it deploys
        this plan's model) or refused (when it deploys another)."""
        op_id = endpoint.proto.labels.get(LABEL_OPERATION)
        if not op_id:
            return endpoint
        op_name = f"{endpoint.name}/operations/{op_id}"
        pending_model = endpoint.proto.labels.get(LABEL_PENDING_MODEL, "")
        operation = self.vertex.get_operation(op_name)
        if operation is not None and not operation.done and pending_model != plan.model_id:
            raise DeployFailed(
                f"endpoint {plan.name} is busy deploying another model ({pending_model})",
                hint=f"wait until `cloudml status {plan.name} --provider gcp` shows it healthy, then deploy again",
            )
        if operation is not None:
            if not operation.done:
                self.progress.note(f"endpoint {plan.name} is already deploying this model (operation {op_id}); resuming the wait")
            operation = self.vertex.wait_operation(op_name, f"for model {pending_model} to deploy on endpoint {plan.name}")
        self._clear_pending(endpoint.name)
        if operation is not None and operation.HasField("error") and pending_model == plan.model_id:
            self._cleanup_failed_model(self.vertex.model_name(plan.model_id))
            serving = bool(self.vertex.get_endpoint(endpoint.name).deployed_models)
            if not serving:  # the failed deploy was the first: the endpoint goes too
                self.vertex.delete_endpoint(endpoint.name)
            raise self._deploy_failure(plan.name, operation.error.message, previous=serving)
        return VertexEndpoint(self.vertex.get_endpoint(endpoint.name), resumed=pending_model == plan.model_id)

    def is_unchanged(self, endpoint: VertexEndpoint, plan: VertexPlan) -> bool:
        """Serving only this plan's model, with all the traffic, and a run completed it: the hash
        label is written only then (a deploy that finished by itself still owes its clean-up)."""
        deployed, labels = endpoint.proto.deployed_models, endpoint.proto.labels
        if endpoint.resumed or len(deployed) != 1 or LABEL_OPERATION in labels or labels.get(LABEL_HASH) != plan.labels[LABEL_HASH]:
            return False
        return self._same_deployment(deployed[0], plan) and dict(endpoint.proto.traffic_split) == {deployed[0].id: 100}

    def refresh_tags(self, endpoint: VertexEndpoint, spec: DeploymentSpec, plan: VertexPlan) -> None:
        labels = endpoint.proto.labels
        # Nothing new serves: the version and runtime labels stay those of the run that completed.
        served = {k: labels[k] for k in SERVED_LABELS if k in labels}
        self._relabel(endpoint.proto, {**plan.labels, **served})

    def finish_interrupted_cleanup(self, endpoint: VertexEndpoint, plan: VertexPlan) -> None:
        """The old Models an earlier run of this plan undeployed but, stopped, did not delete."""
        keep = self.vertex.model_name(plan.model_id)
        for model in self._owned_models(plan.name):
            if model.name != keep and not model.deployed_models:
                self.vertex.delete_model(model.name)

    def _same_deployment(self, deployed, plan: VertexPlan) -> bool:
        resources = deployed.dedicated_resources
        return (deployed.model == self.vertex.model_name(plan.model_id) and resources.machine_spec.machine_type == plan.machine_type
                and resources.min_replica_count == plan.min_replicas and resources.max_replica_count == plan.max_replicas)

    # --- hooks: doing -----------------------------------------------------------------------
    def prebuilt_image(self, plan: VertexPlan, tensorflow_version: str) -> str:
        return tensorflow_image(location=self.options.location, tensorflow_version=tensorflow_version)

    def registry_target(self) -> RegistryTarget:
        from cloudml.providers.gcp import registry

        return registry.target(self.gcp)

    def stage_artifact(self, rollout: Rollout[VertexPlan, VertexEndpoint]) -> str:
        bucket = self.options.staging_bucket or artifacts.default_bucket(self.gcp)
        prefix = f"{artifact_prefix(self.options.prefix, rollout.plan.name)}{rollout.plan.hash_hex[:16]}"
        with self.progress.step(f"uploading the model folder to gs://{bucket}/{prefix}/") as step:
            artifacts.ensure_bucket(self.gcp, bucket)
            uploaded, skipped = artifacts.upload_folder(self.gcp, rollout.packaged.folder, bucket=bucket, prefix=prefix)
            rollout.journal.record(f"the files uploaded to gs://{bucket}/{prefix}/",
                                   lambda: artifacts.delete_objects(self.gcp, bucket=bucket, names=uploaded))
            step.update(f"uploaded {len(uploaded)} files to gs://{bucket}/{prefix}/ ({skipped} already there)")
        # Prebuilt TensorFlow images load the SavedModel folder itself; the cloudml runtime reads the package.
        version = rollout.packaged.manifest.model_version
        return f"gs://{bucket}/{prefix}/" + (f"{version}/" if is_prebuilt(rollout.image) else "")

    def roll_out(self, rollout: Rollout[VertexPlan, VertexEndpoint]) -> Action:
        """Upload the Model, create the endpoint when there is none, deploy the Model beside what
        serves (unless a resumed run already did), then move all traffic to it."""
        plan, journal = rollout.plan, rollout.journal
        labels = self._labels(rollout)
        if self._upload_model(plan, image=rollout.image, artifact_uri=rollout.artifact, env=rollout.spec.env, labels=labels):
            model = self.vertex.model_name(plan.model_id)
            journal.record(f"model {plan.model_id}", lambda: self.vertex.delete_model(model))
        if rollout.current is None:
            # Without the hash label, the mark of a completed run (retire_previous writes it):
            # a first deploy that finishes by itself after this run stopped is still finished
            # (and reported `created`) by the next run.
            endpoint = self._create_endpoint(plan.name, {k: v for k, v in labels.items() if k != LABEL_HASH})
            journal.record(f"endpoint {plan.name}", lambda: self.vertex.delete_endpoint(endpoint.name))
        else:
            endpoint = rollout.current.proto
        previous = self._previous(rollout)
        new = next((dm for dm in endpoint.deployed_models if self._same_deployment(dm, plan)), None)
        if new is None:
            endpoint = self._await_unlabelled_deploy(endpoint, plan)
            new = next((dm for dm in endpoint.deployed_models if self._same_deployment(dm, plan)), None)
        if new is None:
            new = self._deploy_model(endpoint, plan, first=not previous, journal=journal)
        if previous:
            self._move_traffic(endpoint.name, new)
        # A resumed first deploy (the endpoint made by an earlier run) is still a creation.
        return "updated" if previous else "created"

    def retire_previous(self, rollout: Rollout[VertexPlan, VertexEndpoint]) -> None:
        """The endpoint's labels now name the new model (its hash label marks the run complete);
        the old deployed models are undeployed and their Models deleted."""
        endpoint = self.vertex.get_endpoint(self.vertex.endpoint_name(rollout.plan.name))
        self._relabel(endpoint, self._labels(rollout))
        keep = self.vertex.model_name(rollout.plan.model_id)
        previous = self._previous(rollout)
        for deployed in previous:
            with self.progress.step(f"undeploying the previous model {short(deployed.model)}"):
                self.vertex.undeploy(endpoint.name, deployed.id)
        for model_name in {d.model for d in previous} - {keep}:
            self.vertex.delete_model(model_name)

    def _labels(self, rollout: Rollout[VertexPlan, VertexEndpoint]) -> dict[str, str]:
        return {**rollout.plan.labels, **served_labels(rollout.packaged.manifest)}

    def _previous(self, rollout: Rollout[VertexPlan, VertexEndpoint]) -> builtins.list[Any]:
        """The deployed models that served before this run: all but one of this plan."""
        if rollout.current is None:
            return []
        return [dm for dm in rollout.current.proto.deployed_models if not self._same_deployment(dm, rollout.plan)]

    # --- roll-out steps ---------------------------------------------------------------------
    def _upload_model(self, plan: VertexPlan, *, image: str, artifact_uri: str, env: dict[str, str], labels: dict[str, str]) -> bool:
        """Upload the plan's Model unless it is there already; True when this run made it."""
        from google.cloud import aiplatform_v1

        if self.vertex.get_model(self.vertex.model_name(plan.model_id)) is not None:
            return False
        container = aiplatform_v1.ModelContainerSpec(image_uri=image, env=[aiplatform_v1.EnvVar(name=k, value=v) for k, v in sorted(env.items())])
        if not is_prebuilt(image):
            # The cloudml runtime answers Vertex's routes on AIP_HTTP_PORT.
            container.predict_route = "/predict"
            container.health_route = "/health"
            container.ports = [aiplatform_v1.Port(container_port=SERVING_PORT)]
        model = aiplatform_v1.Model(display_name=plan.name, description=f"cloudml deployment {plan.name}; model {plan.model_hash}",
                                    artifact_uri=artifact_uri, container_spec=container, labels=labels)
        from google.api_core import exceptions as api

        with self.progress.step(f"uploading Vertex AI model {plan.model_id}"):
            with gcp_errors(f"uploading model {plan.model_id}", passthrough=api.Conflict):
                try:
                    operation = self.gcp.models.upload_model(request={"parent": self.gcp.parent, "model": model, "model_id": plan.model_id})
                except api.Conflict:
                    # An earlier run's upload of this very model is still running: wait for it.
                    self.vertex.wait_for_model(self.vertex.model_name(plan.model_id))
                    return False
            self.vertex.wait_operation(operation.operation.name, f"for model {plan.model_id} to upload", fail=f"uploading model {plan.model_id}")
        return True

    def _create_endpoint(self, name: str, labels: dict[str, str]):
        from google.api_core import exceptions as api
        from google.cloud import aiplatform_v1

        with self.progress.step(f"creating endpoint {name}"):
            with gcp_errors(f"creating endpoint {name}", passthrough=api.Conflict):
                try:
                    operation = self.gcp.endpoints.create_endpoint(
                        parent=self.gcp.parent, endpoint_id=name, endpoint=aiplatform_v1.Endpoint(display_name=name, labels=labels))
                except api.Conflict:
                    # An earlier run's create of this endpoint is still running (read_endpoint
                    # found none): wait for it rather than fail on ALREADY_EXISTS. The ownership
                    # check saw no endpoint then, so whoever made this one is checked here.
                    made = self.vertex.wait_for_endpoint(self.vertex.endpoint_name(name))
                    if self.owner(VertexEndpoint(made)) != name:
                        raise self.foreign_endpoint(name, "was just created by someone else, not by cloudml") from None
                    return made
            self.vertex.wait_operation(operation.operation.name, f"for endpoint {name} to be created", fail=f"creating endpoint {name}")
        return self.vertex.get_endpoint(self.vertex.endpoint_name(name))

    def _deploy_model(self, endpoint, plan: VertexPlan, *, first: bool, journal: UndoJournal):
        """Deploy the plan's model beside what serves now: all traffic when it is the first,
        none (or the canary share) otherwise. Returns the DeployedModel."""
        from google.cloud import aiplatform_v1

        resources = aiplatform_v1.DedicatedResources(
            machine_spec=aiplatform_v1.MachineSpec(machine_type=plan.machine_type),
            min_replica_count=plan.min_replicas, max_replica_count=plan.max_replicas)
        deployed = aiplatform_v1.DeployedModel(model=self.vertex.model_name(plan.model_id), display_name=plan.model_id, dedicated_resources=resources,
                                               service_account=self.options.service_account or "")
        split = canary_split({} if first else dict(endpoint.traffic_split), self.options.canary_percent)
        with gcp_errors(f"deploying model {plan.model_id} to endpoint {plan.name}"):
            operation = self.gcp.endpoints.deploy_model(endpoint=endpoint.name, deployed_model=deployed, traffic_split=split)
        op_name = operation.operation.name
        self._mark_pending(endpoint.name, short(op_name), plan.model_id)
        beside = "" if first else f" beside the serving one ({split['0']}% traffic)"
        result = self.vertex.wait_operation(op_name, f"for model {plan.model_id} to deploy on endpoint {plan.name}{beside}")
        self._clear_pending(endpoint.name)
        if result.HasField("error"):
            raise self._deploy_failure(plan.name, result.error.message, previous=not first)
        new = aiplatform_v1.DeployModelResponse.deserialize(result.response.value).deployed_model
        journal.record(f"deployed model {new.id}", lambda: self.vertex.undeploy(endpoint.name, new.id))
        return new

    def _await_unlabelled_deploy(self, endpoint, plan: VertexPlan):
        """An earlier run killed between its deployModel call and labelling the endpoint left an
        operation no label names, but Vertex already lists the deployment in the Model's
        deployed_models: it is waited for rather than started a second time. Returns the
        endpoint as it is then."""
        model = self.vertex.model_name(plan.model_id)
        if not self.vertex.deployments_under_way(endpoint, model):
            return endpoint
        with self.progress.step(f"waiting for model {plan.model_id} to deploy on endpoint {plan.name} (an earlier run started it)"):
            return self.vertex.wait_deployments_under_way(endpoint, model)

    def _deploy_failure(self, name: str, reason: str, *, previous: bool = True) -> DeployFailed:
        keeps = "the previous model keeps serving all traffic" if previous else "nothing was left behind"
        return DeployFailed(
            f"Vertex AI could not deploy the model to endpoint {name}: {reason.rstrip('.')}; {keeps}",
            hint=f"the model server's log tail is below (`cloudml logs {name} --provider gcp` shows more); fix the model or image and deploy again",
            details=self._log_tail(name),
        )

    def _move_traffic(self, endpoint_name: str, new) -> None:
        if self.options.canary_percent:
            with self.progress.step(f"canary: {self.options.canary_percent}% of the traffic on the new model for {self.options.canary_wait_seconds}s"):
                time.sleep(self.options.canary_wait_seconds)
        with self.progress.step(f"moving all traffic of endpoint {short(endpoint_name)} to the new model"):
            self.vertex.update_endpoint(endpoint_name, traffic_split={new.id: 100})

    def _mark_pending(self, endpoint_name: str, op_id: str, model_id: str) -> None:
        labels = {**self.vertex.get_endpoint(endpoint_name).labels, LABEL_OPERATION: op_id, LABEL_PENDING_MODEL: model_id}
        self.vertex.update_endpoint(endpoint_name, labels=labels)

    def _clear_pending(self, endpoint_name: str) -> None:
        labels = dict(self.vertex.get_endpoint(endpoint_name).labels)
        if LABEL_OPERATION in labels or LABEL_PENDING_MODEL in labels:
            labels.pop(LABEL_OPERATION, None)
            labels.pop(LABEL_PENDING_MODEL, None)
            self.vertex.update_endpoint(endpoint_name, labels=labels)

    def _relabel(self, endpoint, labels: dict[str, str]) -> None:
        wanted = {**{k: v for k, v in endpoint.labels.items() if k in (LABEL_OPERATION, LABEL_PENDING_MODEL)}, **labels}
        if dict(endpoint.labels) != wanted:
            self.vertex.update_endpoint(endpoint.name, labels=wanted)

    def _cleanup_failed_model(self, model_name: str) -> None:
        try:
            self.vertex.delete_model(model_name)
        except Exception as exc:  # noqa: BLE001 - the deploy failure is what the user must see
            self.progress.note(f"could not delete model {model_name} after the failure: {exc}")

    # --- reading --------------------------------------------------------------------------
    def location(self) -> str:
        return self.gcp.parent

    def describe(self, endpoint: VertexEndpoint) -> Deployment:
        proto = endpoint.proto
        name = short(proto.name)
        labels = dict(proto.labels)
        split = {k: v for k, v in proto.traffic_split.items() if v > 0}
        serving = [dm for dm in proto.deployed_models if dm.id in split]
        if LABEL_OPERATION in labels:
            status = DeploymentStatus.UPDATING if serving else DeploymentStatus.CREATING
        elif serving:
            status = DeploymentStatus.HEALTHY
        else:
            status = DeploymentStatus.UNHEALTHY
        main = max(serving, key=lambda dm: split[dm.id], default=None)
        model_hash = None
        if main is not None:
            model = self.vertex.get_model(main.model)
            if model is not None:
                model_hash = next((w for w in model.description.split() if w.startswith("sha256:")), None)
        details: dict[str, Any] = {
            "resource": proto.name,
            "project": self.gcp.project,
            "location": self.gcp.location,
            "traffic_split": {short(dm.model): split.get(dm.id, 0) for dm in proto.deployed_models},
        }
        if main is not None:
            resources = main.dedicated_resources
            details.update(model=main.model, deployed_model_id=main.id, machine_type=resources.machine_spec.machine_type,
                           replicas=f"{resources.min_replica_count}-{resources.max_replica_count}")
        if LABEL_OPERATION in labels:
            details["operation"] = f"{proto.name}/operations/{labels[LABEL_OPERATION]}"
        details.update(served_shown(labels))
        created = proto.create_time or utcnow()
        return Deployment(
            name=name, provider=self.provider, status=status, endpoint_url=self.gcp.endpoint_url(name),
            model_version=tag_version(labels.get(LABEL_VERSION)), model_hash=model_hash,
            created_at=created, updated_at=proto.update_time or created,
            tags={k: v for k, v in labels.items() if k not in OWN_LABELS}, details=details,
        )

    def get(self, name: str) -> Deployment:
        if self.read_endpoint(name) is None:
            models = self._owned_models(name)
            if models:
                ids = ", ".join(short(m.name) for m in models)
                raise DeploymentNotFound(
                    f"no Vertex AI endpoint named {name!r} in {self.gcp.parent}, but an interrupted deploy left its model {ids}",
                    hint=f"deploy {name} again to finish it, or `cloudml delete {name} --provider gcp --purge` removes the model and its files",
                )
        return super().get(name)

    def list_endpoints(self) -> builtins.list[tuple[str, VertexEndpoint]]:
        with gcp_errors("listing Vertex AI endpoints"):
            return [(short(e.name), VertexEndpoint(e)) for e in self.gcp.endpoints.list_endpoints(parent=self.gcp.parent)]

    def listed_extras(self, listed: set[str]) -> builtins.list[Deployment]:
        """Deployments whose Models outlived their endpoint (see _describe_orphan)."""
        with gcp_errors("listing Vertex AI models"):
            models = list(self.gcp.models.list_models(request={"parent": self.gcp.parent}))
        orphans: dict[str, builtins.list[Any]] = {}
        for model in models:
            owner = model.labels.get(LABEL_DEPLOYMENT)
            if owner and owner not in listed:
                orphans.setdefault(owner, []).append(model)
        return [self._describe_orphan(name, left) for name, left in orphans.items()]

    def _owned_models(self, name: str) -> builtins.list[Any]:
        with gcp_errors(f"listing the models of {name}"):
            return list(self.gcp.models.list_models(request={"parent": self.gcp.parent, "filter": f'labels.{LABEL_DEPLOYMENT}="{name}"'}))

    def _describe_orphan(self, name: str, models: builtins.list[Any]) -> Deployment:
        """A deployment whose Models exist without its endpoint (a first deploy interrupted after
        the upload): listed as failed, so that it is seen and can be deployed again or deleted."""
        newest = max(models, key=lambda m: m.update_time or m.create_time)
        created = newest.create_time or utcnow()
        return Deployment(
            name=name, provider=self.provider, status=DeploymentStatus.FAILED, endpoint_url=None,
            model_version=tag_version(newest.labels.get(LABEL_VERSION)),
            model_hash=next((w for w in newest.description.split() if w.startswith("sha256:")), None),
            created_at=created, updated_at=newest.update_time or created,
            tags={k: v for k, v in newest.labels.items() if k not in OWN_LABELS},
            details={"models": sorted(short(m.name) for m in models), "project": self.gcp.project, "location": self.gcp.location,
                     "problem": f"no endpoint: a deploy was interrupted after uploading the model; deploy {name} again, or delete it"},
        )

    def invoke(self, name: str, body: dict[str, Any], connection: None) -> builtins.list[Any]:
        from google.api_core import exceptions as api

        try:
            with gcp_errors(f"calling endpoint {name}", error=EndpointUnavailable, passthrough=(api.NotFound, api.BadRequest)):
                response = self.gcp.predictions.predict(endpoint=self.vertex.endpoint_name(name), **body)
        except api.NotFound:
            raise DeploymentNotFound(f"no Vertex AI endpoint {name!r} in {self.gcp.parent}") from None
        except api.BadRequest as exc:
            if error_status(exc) == "FAILED_PRECONDITION":
                raise EndpointUnavailable(f"endpoint {name} is not serving: {error_message(exc)}") from None
            raise PredictionRejected(f"{name} rejected the request: {container_error(error_message(exc))}", status_code=400) from None
        from google.protobuf import json_format

        payload = json_format.MessageToDict(type(response).pb(response))
        return payload.get("predictions", [])

    def tail_logs(self, endpoint: VertexEndpoint, lines: int) -> builtins.list[str]:
        name = short(endpoint.name)
        with gcp_errors(f"reading the logs of {name}"):
            return logs.tail(self.gcp, name, lines)

    def follow_logs(self, endpoint: VertexEndpoint, lines: int) -> Iterator[str]:
        name = short(endpoint.name)
        with gcp_errors(f"reading the logs of {name}"):
            return logs.follow(self.gcp, name, lines=lines)

    def _log_tail(self, name: str) -> str:
        return self.log_details(lambda lines: logs.tail(self.gcp, name, lines), empty=f"(no Cloud Logging entries for endpoint {name} yet)")

    # --- delete ---------------------------------------------------------------------------
    def delete_endpoint(self, endpoint: VertexEndpoint) -> None:
        proto = endpoint.proto
        op_id = proto.labels.get(LABEL_OPERATION)
        if op_id:  # a deploy still running: let it finish, then undeploy what it made
            self.vertex.wait_operation(f"{proto.name}/operations/{op_id}", f"for the running deployment on {short(proto.name)} to finish")
            proto = self.vertex.get_endpoint(proto.name)
        self.vertex.undeploy_all(proto)
        self.vertex.delete_endpoint(proto.name)

    def delete_leftovers(self, name: str) -> bool:
        deleted = False
        for model in self._owned_models(name):
            deleted = self.vertex.delete_model(model.name) or deleted
        return deleted

    def purge_artifacts(self, name: str) -> bool:
        bucket = self.options.staging_bucket or artifacts.default_bucket(self.gcp)
        with gcp_errors(f"deleting the model folders in gs://{bucket}"):
            return artifacts.delete_prefix(self.gcp, bucket=bucket, prefix=artifact_prefix(self.options.prefix, name)) > 0
