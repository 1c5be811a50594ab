"""The `aws` provider: SageMaker real-time endpoints.

One deployment is one SageMaker endpoint of the same name with one production variant. Model and
EndpointConfig names carry the model's content hash, so a re-run finds what an earlier run made
and the same model twice changes nothing. Every resource cloudml makes is tagged
`cloudml:deployment` / `cloudml:model-hash` (the endpoint its hash only once a run completes:
that is what `unchanged` reads); `list` and `delete` go by the deployment tag.
"""

from __future__ import annotations

import builtins
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from cloudml.contract import Manifest
from cloudml.errors import ConfigError, DeployFailed, DeploymentNotFound, EndpointUnavailable, PredictionRejected
from cloudml.providers.aws import artifacts, logs, scaling
from cloudml.providers.aws.images import check_instance_type, tensorflow_image
from cloudml.providers.aws.options import AwsOptions
from cloudml.providers.aws.session import AwsSession, aws_errors, error_code, error_message, is_not_found, tag_list, tags_dict
from cloudml.providers.cloud import Action, CloudDeployer, CloudPlan, RegistryTarget, Rollout, serving_choice
from cloudml.providers.common import artifact_prefix, container_error, short_hash, tag_version, wait_while_busy
from cloudml.providers.served import FRAMEWORK, NOT_ONNX, RUNTIME, one_line, served_details
from cloudml.results import Deployment, DeploymentStatus, utcnow
from cloudml.spec import DeploymentSpec

VARIANT = "primary"
TAG_DEPLOYMENT = "cloudml:deployment"
TAG_HASH = "cloudml:model-hash"
TAG_VERSION = "cloudml:model-version"
# How the package is served (backend, framework, why not ONNX Runtime): tagged with the version.
TAG_RUNTIME = "cloudml:runtime"
TAG_FRAMEWORK = "cloudml:framework"
TAG_NOT_ONNX = "cloudml:not-onnx-because"
TAG_VALUE_LIMIT = 256
BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
STATUS = {
    "InService": DeploymentStatus.HEALTHY,
    "Creating": DeploymentStatus.CREATING,
    "Updating": DeploymentStatus.UPDATING,
    "SystemUpdating": DeploymentStatus.UPDATING,
    "RollingBack": DeploymentStatus.UPDATING,
    "Deleting": DeploymentStatus.DELETING,
    "OutOfService": DeploymentStatus.UNHEALTHY,
    "Failed": DeploymentStatus.FAILED,
    "UpdateRollbackFailed": DeploymentStatus.FAILED,
}


@dataclass(frozen=True)
class Plan(CloudPlan):
    """What a deploy asks for, resolved to SageMaker names."""

    model_name: str
    config_name: str
    role: str
    instance_type: str
    instance_count: int
    min_replicas: int
    max_replicas: int | None


@dataclass(frozen=True)
class Endpoint:
    """A SageMaker endpoint as DescribeEndpoint reports it, with its tags and (once a deploy
    settled it) its autoscaling registration: None when not registered."""

    description: dict
    tags: dict[str, str]
    target: dict | None = None
    resumed: Action | None = None  # settle waited for a create or update an earlier run started

    @property
    def name(self) -> str:
        return self.description["EndpointName"]

    @property
    def status(self) -> str:
        return self.description["EndpointStatus"]

    @property
    def config_name(self) -> str | None:
        return self.description.get("EndpointConfigName")


class SageMakerDeployer(CloudDeployer[Plan, Endpoint]):
    provider = "aws"
    Options = AwsOptions
    options: AwsOptions
    endpoint_kind = "SageMaker endpoint"
    ownership_mark = TAG_DEPLOYMENT
    log_name = "CloudWatch log"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._aws: AwsSession | None = None

    @property
    def aws(self) -> AwsSession:
        if self._aws is None:
            self._aws = AwsSession(self.options)
        return self._aws

    def location(self) -> str:
        return self.aws.region

    # --- deploy: deciding -----------------------------------------------------------------
    def check_request(self, spec: DeploymentSpec) -> None:
        self._role()

    def read_endpoint(self, name: str) -> Endpoint | None:
        described = self._endpoint(name)
        return None if described is None else Endpoint(described, self._tags(described["EndpointArn"]))

    def owner(self, endpoint: Endpoint) -> str | None:
        return endpoint.tags.get(TAG_DEPLOYMENT)

    def settle(self, endpoint: Endpoint, plan: Plan) -> Endpoint | None:
        """An endpoint busy with *this* plan (an earlier run timed out or was interrupted) is
        waited for; one busy with something else is refused; a Failed one is replaced."""
        if endpoint.status in BUSY:
            if endpoint.status == "Deleting" or self._target_config(endpoint.description) != plan.config_name:
                raise DeployFailed(
                    f"endpoint {plan.name} is {endpoint.status} with another change",
                    hint=f"wait until `cloudml status {plan.name} --provider aws` shows it healthy, then deploy again",
                )
            self.progress.note(f"endpoint {plan.name} is already {endpoint.status} with this model; waiting for it")
            resumed: Action = "created" if endpoint.status == "Creating" else "updated"
            endpoint = replace(endpoint, description=self._wait(plan.name, "to finish"), resumed=resumed)
        if endpoint.resumed is None and endpoint.config_name == plan.config_name and TAG_HASH not in endpoint.tags:
            # This plan's create, done by itself since an earlier run stopped: never completed, so still a creation.
            endpoint = replace(endpoint, resumed="created")
        if endpoint.status == "Failed":
            # A failed endpoint serves nothing and SageMaker cannot update it: replace it.
            self.progress.note(f"endpoint {plan.name} is Failed ({endpoint.description.get('FailureReason', 'no reason given')}); recreating it")
            self._delete_endpoint(plan.name)
            return None
        return replace(endpoint, target=scaling.current_target(self.aws, plan.name, VARIANT))

    def is_unchanged(self, endpoint: Endpoint, plan: Plan) -> bool:
        """Serving this plan's config, and finished: a change an earlier run started (resumed
        now, or done by itself since) still owes its tags, scaling and clean-up, which the tags
        show: the hash tag is written (on a create too) only when a run completes."""
        if endpoint.status != "InService" or endpoint.config_name != plan.config_name:
            return False
        if endpoint.resumed or endpoint.tags.get(TAG_HASH) != plan.model_hash:
            return False
        if plan.max_replicas is None:
            return True
        target = endpoint.target
        if not target:
            return False
        return (target["MinCapacity"], target["MaxCapacity"]) == (plan.min_replicas, plan.max_replicas)

    def refresh_tags(self, endpoint: Endpoint, spec: DeploymentSpec, plan: Plan) -> None:
        self._retag(endpoint, spec, plan, served=None)

    def finish_interrupted_cleanup(self, endpoint: Endpoint, plan: Plan) -> None:
        self._remove_previous(plan)  # its predecessor's model and config

    # --- deploy: doing --------------------------------------------------------------------
    def prebuilt_image(self, plan: Plan, tensorflow_version: str) -> str:
        return tensorflow_image(region=self.aws.region, tensorflow_version=tensorflow_version, instance_type=plan.instance_type)

    def registry_target(self) -> RegistryTarget:
        from cloudml.providers.aws import registry

        return registry.target(self.aws)

    def stage_artifact(self, rollout: Rollout[Plan, Endpoint]) -> str:
        plan = rollout.plan
        bucket = self._bucket()
        key = f"{artifact_prefix(self.options.prefix, plan.name)}{plan.hash_hex[:16]}/model.tar.gz"
        with self.progress.step(f"uploading model.tar.gz to s3://{bucket}/{key}"):
            artifacts.ensure_bucket(self.aws, bucket)
            packaged = rollout.packaged
            assert packaged.archive is not None  # prepare_model always writes the archive
            if artifacts.upload_archive(self.aws, packaged.archive, bucket=bucket, key=key, digest=packaged.archive_digest,
                                        tags={TAG_DEPLOYMENT: plan.name, TAG_HASH: plan.model_hash}):
                rollout.journal.record(f"s3://{bucket}/{key}", lambda: self.aws.s3.delete_object(Bucket=bucket, Key=key))
        return f"s3://{bucket}/{key}"

    def roll_out(self, rollout: Rollout[Plan, Endpoint]) -> Action:
        spec, plan, current, journal = rollout.spec, rollout.plan, rollout.current, rollout.journal
        served = served_tags(rollout.packaged.manifest)
        tags = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash, **served}
        # The endpoint is made without the hash tag, the mark of a completed run that the
        # unchanged check reads: a create that finishes by itself after this run stopped is
        # still finished (and reported `created`) by the next run.
        made = {k: v for k, v in tags.items() if k != TAG_HASH}
        # The autoscaling registration before this run (a replaced Failed endpoint may have left one).
        target = current.target if current is not None else scaling.current_target(self.aws, plan.name, VARIANT)
        if self._create_model(plan, image=rollout.image, model_data=rollout.artifact, env=spec.env, tags=tags):
            journal.record(f"model {plan.model_name}", lambda: self._delete_model(plan.model_name))
        if self._create_config(plan, count=self._instance_count(current, plan, target), tags=tags):
            journal.record(f"endpoint configuration {plan.config_name}", lambda: self._delete_config(plan.config_name))
        action: Action
        if current is None:
            with aws_errors(f"creating endpoint {spec.name}"):
                self.aws.sagemaker.create_endpoint(EndpointName=spec.name, EndpointConfigName=plan.config_name, Tags=tag_list(made))
            journal.record(f"endpoint {spec.name}", lambda: self._delete_endpoint(spec.name))
            described = self._wait(spec.name, "to become InService")
            self._check_created(spec.name, described)
            endpoint, action = Endpoint(described, made), "created"
        else:
            if current.config_name != plan.config_name:
                self._update(current, plan, target)
            # else: an earlier run's create or update of this very config finished; what it owed follows.
            endpoint, action = current, current.resumed or "updated"
        self._apply_scaling(plan, target)
        self._retag(endpoint, spec, plan, served=served)  # last: the run is complete
        return action

    def retire_previous(self, rollout: Rollout[Plan, Endpoint]) -> None:
        self._remove_previous(rollout.plan)

    def _remove_previous(self, plan: Plan) -> None:
        self._remove_owned(plan.name, keep=frozenset({plan.model_name, plan.config_name}))

    def _bucket(self) -> str:
        return self.options.bucket or artifacts.default_bucket(self.aws)

    def _role(self) -> str:
        if not self.options.role_arn:
            raise ConfigError(
                "the aws provider needs a SageMaker execution role",
                hint="pass -o role_arn=arn:aws:iam::<account>:role/<name>, set aws: {role_arn: ...} in cloudml.yaml, "
                     "or export CLOUDML_AWS_ROLE_ARN (the role must trust sagemaker.amazonaws.com; see the README)",
            )
        return self.options.role_arn

    def plan(self, spec: DeploymentSpec, model_hash: str) -> Plan:
        role = self._role()
        resources = spec.resources
        instance_type = resources.instance_type or self.options.instance_type
        check_instance_type(instance_type)
        if resources.max_replicas is not None and resources.min_replicas < 1:
            raise ConfigError("SageMaker real-time endpoints keep at least one instance", hint="use --min-replicas 1 or more")
        count = max(self.options.instance_count, resources.min_replicas, 1)
        if resources.max_replicas is not None:
            count = min(count, resources.max_replicas)
        hex_ = model_hash.split(":")[-1]
        # The default image differs between CPU and GPU instances, so the family is part of the model.
        gpu = instance_type.split(".")[1][:1] in ("g", "p")
        model_key = short_hash(model_hash, role, serving_choice(spec, self.options), gpu, spec.env, self.options.kms_key_id)
        model_name = f"{spec.name}-{hex_[:8]}-{model_key[:6]}"
        config_key = short_hash(model_name, instance_type, count, self.options.kms_key_id)
        return Plan(
            name=spec.name, model_hash=model_hash, model_name=model_name, config_name=f"{spec.name}-{hex_[:8]}-{config_key[:6]}", role=role,
            instance_type=instance_type, instance_count=count, min_replicas=max(resources.min_replicas, 1), max_replicas=resources.max_replicas,
        )

    def _target_config(self, endpoint: dict) -> str | None:
        pending = endpoint.get("PendingDeploymentSummary") or {}
        return pending.get("EndpointConfigName") or endpoint.get("EndpointConfigName")

    def _instance_count(self, current: Endpoint | None, plan: Plan, target: dict | None) -> int:
        """On update, keep the instances autoscaling chose (within the new bounds) instead of
        resetting the endpoint to its initial count."""
        if current is None or target is None:
            return plan.instance_count
        running = next((v.get("CurrentInstanceCount") for v in current.description.get("ProductionVariants", []) if v["VariantName"] == VARIANT), None)
        low = plan.min_replicas if plan.max_replicas is not None else target["MinCapacity"]
        high = plan.max_replicas if plan.max_replicas is not None else target["MaxCapacity"]
        return max(low, min(high, running or plan.instance_count))

    def _create_model(self, plan: Plan, *, image: str, model_data: str, env: dict[str, str], tags: dict[str, str]) -> bool:
        if self._found(lambda: self.aws.sagemaker.describe_model(ModelName=plan.model_name), f"model {plan.model_name}"):
            return False
        container = {"Image": image, "ModelDataUrl": model_data, "Environment": dict(env)}
        with aws_errors(f"creating SageMaker model {plan.model_name}"):
            self.aws.sagemaker.create_model(ModelName=plan.model_name, PrimaryContainer=container, ExecutionRoleArn=plan.role, Tags=tag_list(tags))
        return True

    def _create_config(self, plan: Plan, *, count: int, tags: dict[str, str]) -> bool:
        if self._found(lambda: self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=plan.config_name), f"endpoint configuration {plan.config_name}"):
            return False
        variant = {"VariantName": VARIANT, "ModelName": plan.model_name, "InstanceType": plan.instance_type,
                   "InitialInstanceCount": count, "InitialVariantWeight": 1.0}
        extra = {"KmsKeyId": self.options.kms_key_id} if self.options.kms_key_id else {}
        with aws_errors(f"creating endpoint configuration {plan.config_name}"):
            self.aws.sagemaker.create_endpoint_config(EndpointConfigName=plan.config_name, ProductionVariants=[variant], Tags=tag_list(tags), **extra)
        return True

    def _found(self, describe: Callable[[], object], what: str) -> bool:
        from botocore.exceptions import ClientError

        with aws_errors(f"looking up {what}"):
            try:
                describe()
                return True
            except ClientError as exc:
                if is_not_found(exc):
                    return False
                raise

    def _update(self, current: Endpoint, plan: Plan, target: dict | None) -> None:
        opts = self.options
        if opts.canary_percent:
            routing = {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": opts.canary_percent},
                       "WaitIntervalInSeconds": opts.canary_wait_seconds}
        else:
            routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        deployment_config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": opts.termination_wait_seconds,
                "MaximumExecutionTimeoutInSeconds": int(min(max(opts.wait_timeout, 600), 14400)),
            },
        }
        if opts.rollback_alarms:
            deployment_config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in opts.rollback_alarms]}
        previous = current.config_name or ""
        # SageMaker refuses to change the instance type of an autoscaled variant: the registration
        # is lifted for the update and put back afterwards (whatever the outcome).
        lifted = target is not None and self._instance_type(previous) != plan.instance_type
        if lifted:
            scaling.deregister(self.aws, plan.name, VARIANT)
        try:
            with aws_errors(f"updating endpoint {plan.name}"):
                self.aws.sagemaker.update_endpoint(
                    EndpointName=plan.name, EndpointConfigName=plan.config_name, DeploymentConfig=deployment_config,
                    # With autoscaling on, keep the instance count it chose rather than the config's.
                    RetainAllVariantProperties=target is not None and not lifted,
                )
            final = self._wait(plan.name, "to finish the blue/green update")
        finally:
            if lifted:
                assert target is not None  # lifted implies an autoscaling target
                scaling.register(self.aws, plan.name, VARIANT, min_replicas=int(target["MinCapacity"]), max_replicas=int(target["MaxCapacity"]),
                                 target_value=self.options.target_invocations_per_instance)
        if final.get("EndpointConfigName") != plan.config_name:
            raise DeployFailed(
                f"SageMaker rolled the update of {plan.name} back: {(final.get('FailureReason') or 'no reason given').rstrip('.')}; "
                f"the previous version ({previous}) keeps serving",
                hint=f"see the new model's log below and `cloudml logs {plan.name} --provider aws`",
                details=self._log_tail(plan.name),
            )
        if final["EndpointStatus"] != "InService":
            raise DeployFailed(
                f"endpoint {plan.name} ended the update {final['EndpointStatus']}: {final.get('FailureReason') or 'no reason given'}",
                details=self._log_tail(plan.name),
            )

    def _instance_type(self, config_name: str) -> str | None:
        with aws_errors(f"reading endpoint configuration {config_name}"):
            variants = self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
        return next((v.get("InstanceType") for v in variants if v["VariantName"] == VARIANT), None)

    def _check_created(self, name: str, endpoint: dict) -> None:
        if endpoint["EndpointStatus"] == "InService":
            return
        raise DeployFailed(
            f"endpoint {name} failed to start ({endpoint['EndpointStatus']}): {endpoint.get('FailureReason') or 'no reason given'}",
            hint="the log tail below is the container's; nothing was left behind, fix the model or image and deploy again",
            details=self._log_tail(name),
        )

    def _wait(self, name: str, goal: str) -> dict:
        def read():
            endpoint = self._endpoint(name)
            return endpoint, endpoint["EndpointStatus"] if endpoint else ""

        return wait_while_busy(
            self.progress, f"for endpoint {name} {goal}", read, busy=BUSY, what=f"endpoint {name}",
            timeout=self.options.wait_timeout, interval=self.options.poll_interval,
            hint=f"SageMaker keeps working on it: run the same deploy again to resume waiting, or watch `cloudml status {name} --provider aws`",
        )

    def _retag(self, current: Endpoint, spec: DeploymentSpec, plan: Plan, *, served: dict[str, str] | None) -> None:
        """`served`: the version and runtime tags of the package this run rolled out (None: keep
        the endpoint's, nothing new serves)."""
        wanted = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash, **(served or {})}
        changed = {k: v for k, v in wanted.items() if current.tags.get(k) != v}
        arn = current.description["EndpointArn"]
        if changed:
            with aws_errors(f"tagging endpoint {spec.name}"):
                self.aws.sagemaker.add_tags(ResourceArn=arn, Tags=tag_list(changed))
        # The previous package's reason for not being ONNX would otherwise outlive it.
        if served is not None and TAG_NOT_ONNX in current.tags and TAG_NOT_ONNX not in served:
            with aws_errors(f"tagging endpoint {spec.name}"):
                self.aws.sagemaker.delete_tags(ResourceArn=arn, TagKeys=[TAG_NOT_ONNX])

    def _apply_scaling(self, plan: Plan, target: dict | None) -> None:
        """`target`: the registration before this run; an update that lifted it put it back as it was."""
        if plan.max_replicas is None:
            return  # an existing registration is kept: updates never drop autoscaling
        if target and (target["MinCapacity"], target["MaxCapacity"]) == (plan.min_replicas, plan.max_replicas):
            return
        with self.progress.step(f"autoscaling {plan.name} between {plan.min_replicas} and {plan.max_replicas} instances"):
            scaling.register(self.aws, plan.name, VARIANT, min_replicas=plan.min_replicas, max_replicas=plan.max_replicas,
                             target_value=self.options.target_invocations_per_instance)

    def _remove_owned(self, name: str, *, keep: frozenset[str] = frozenset()) -> bool:
        """Delete this deployment's Models and EndpointConfigs except those in `keep` (after an
        update: the previous version's; on delete: all). True when any went."""
        configs, models = self._owned(name)
        gone = [config for config in configs if config not in keep] + [model for model in models if model not in keep]
        for config in configs:
            if config not in keep:
                self._delete_config(config)
        for model in models:
            if model not in keep:
                self._delete_model(model)
        return bool(gone)

    def _delete_config(self, name: str) -> None:
        with aws_errors(f"deleting endpoint configuration {name}"):
            self.aws.sagemaker.delete_endpoint_config(EndpointConfigName=name)

    def _delete_model(self, name: str) -> None:
        with aws_errors(f"deleting model {name}"):
            self.aws.sagemaker.delete_model(ModelName=name)

    def _owned(self, name: str) -> tuple[list[str], list[str]]:
        """The EndpointConfigs and Models tagged as this deployment's."""
        sm = self.aws.sagemaker
        configs: list[str] = []
        models: list[str] = []
        with aws_errors(f"listing the resources of {name}"):
            for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=name):
                configs += [item["EndpointConfigName"] for item in page["EndpointConfigs"]
                            if self._tags(item["EndpointConfigArn"]).get(TAG_DEPLOYMENT) == name]
            for page in sm.get_paginator("list_models").paginate(NameContains=name):
                models += [item["ModelName"] for item in page["Models"] if self._tags(item["ModelArn"]).get(TAG_DEPLOYMENT) == name]
        return configs, models

    # --- reading --------------------------------------------------------------------------
    def _endpoint(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        with aws_errors(f"describing endpoint {name}"):
            try:
                return self.aws.sagemaker.describe_endpoint(EndpointName=name)
            except ClientError as exc:
                if is_not_found(exc):
                    return None
                raise

    def _tags(self, arn: str) -> dict[str, str]:
        with aws_errors(f"reading the tags of {arn}"):
            return tags_dict(self.aws.sagemaker.list_tags(ResourceArn=arn).get("Tags"))

    def describe(self, endpoint: Endpoint) -> Deployment:
        described, tags = endpoint.description, endpoint.tags
        name = described["EndpointName"]
        variant: dict[str, Any] = next((v for v in described.get("ProductionVariants", []) if v["VariantName"] == VARIANT), {})
        details: dict[str, Any] = {
            "endpoint_arn": described["EndpointArn"],
            "endpoint_config": described.get("EndpointConfigName"),
            "sagemaker_status": described["EndpointStatus"],
            "instances": variant.get("CurrentInstanceCount"),
            "region": self.aws.region,
        }
        if described.get("FailureReason"):
            details["failure_reason"] = described["FailureReason"]
        target = scaling.current_target(self.aws, name, VARIANT)
        if target:
            details["autoscaling"] = f"{target['MinCapacity']}-{target['MaxCapacity']} instances"
        details.update({key: tags[tag] for key, tag in ((RUNTIME, TAG_RUNTIME), (FRAMEWORK, TAG_FRAMEWORK), (NOT_ONNX, TAG_NOT_ONNX)) if tags.get(tag)})
        return Deployment(
            name=name, provider=self.provider, status=STATUS.get(described["EndpointStatus"], DeploymentStatus.UNHEALTHY),
            endpoint_url=self.aws.runtime_url(name), model_version=tag_version(tags.get(TAG_VERSION)),
            model_hash=tags.get(TAG_HASH), created_at=described.get("CreationTime") or utcnow(),
            updated_at=described.get("LastModifiedTime") or utcnow(),
            tags={k: v for k, v in tags.items() if not k.startswith("cloudml:")}, details=details,
        )

    def list_endpoints(self) -> Iterator[tuple[str, Endpoint]]:
        """Each endpoint as ListEndpoints summarises it, with its tags: read_listed describes those cloudml's."""
        with aws_errors("listing SageMaker endpoints"):
            for page in self.aws.sagemaker.get_paginator("list_endpoints").paginate():
                for item in page["Endpoints"]:
                    endpoint = Endpoint(item, self._tags(item["EndpointArn"]))
                    yield endpoint.name, endpoint

    def read_listed(self, endpoint: Endpoint) -> Endpoint | None:
        described = self._endpoint(endpoint.name)
        return None if described is None else replace(endpoint, description=described)

    def invoke(self, name: str, body: dict[str, Any], connection: None) -> builtins.list[Any]:
        from botocore.exceptions import ClientError

        try:
            with aws_errors(f"invoking endpoint {name}", error=EndpointUnavailable, passthrough=ClientError):
                response = self.aws.runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Accept="application/json", Body=json.dumps(body))
        except ClientError as exc:
            code, message = error_code(exc), error_message(exc)
            if code == "ModelError":
                original = exc.response.get("OriginalMessage") or message
                raise PredictionRejected(f"{name} rejected the request: {container_error(original)}",
                                         status_code=exc.response.get("OriginalStatusCode")) from None
            if is_not_found(exc) or "not found" in message:
                raise DeploymentNotFound(f"no SageMaker endpoint named {name!r} in {self.aws.region}") from None
            if code == "ValidationError" and "not in service" in message.lower():
                raise EndpointUnavailable(f"endpoint {name} is not serving: {message}") from None
            with aws_errors(f"invoking endpoint {name}", error=EndpointUnavailable):
                raise
        return json.loads(response["Body"].read())["predictions"]

    def tail_logs(self, endpoint: Endpoint, lines: int) -> builtins.list[str]:
        return logs.tail(self.aws, endpoint.name, lines)

    def follow_logs(self, endpoint: Endpoint, lines: int) -> Iterator[str]:
        return logs.follow(self.aws, endpoint.name, lines=lines)

    def _log_tail(self, name: str) -> str:
        return self.log_details(lambda lines: logs.tail(self.aws, name, lines), empty=f"(no lines in CloudWatch log group {logs.log_group(name)} yet)")

    # --- delete ---------------------------------------------------------------------------
    def delete_endpoint(self, endpoint: Endpoint) -> None:
        scaling.deregister(self.aws, endpoint.name, VARIANT)
        self._delete_endpoint(endpoint.name)

    def delete_leftovers(self, name: str) -> bool:
        return self._remove_owned(name)

    def purge_artifacts(self, name: str) -> bool:
        bucket = self._bucket()
        with aws_errors(f"deleting the model artifacts in s3://{bucket}"):
            return artifacts.delete_prefix(self.aws, bucket=bucket, prefix=artifact_prefix(self.options.prefix, name)) > 0

    def _delete_endpoint(self, name: str) -> None:
        from botocore.exceptions import ClientError

        with aws_errors(f"deleting endpoint {name}"):
            try:
                self.aws.sagemaker.delete_endpoint(EndpointName=name)
            except ClientError as exc:
                if is_not_found(exc):
                    return
                raise
        deadline = time.monotonic() + self.options.wait_timeout
        while self._endpoint(name) is not None and time.monotonic() < deadline:
            time.sleep(min(self.options.poll_interval, 5))



def served_tags(manifest: Manifest) -> dict[str, str]:
    """The model version and how its package is served, as the tags that move together when a
    run completes."""
    shown = served_details(manifest.runtime)
    tags = {TAG_VERSION: str(manifest.model_version), TAG_RUNTIME: shown[RUNTIME], TAG_FRAMEWORK: tag_value(shown[FRAMEWORK])}
    if NOT_ONNX in shown:
        tags[TAG_NOT_ONNX] = tag_value(shown[NOT_ONNX])
    return tags


def tag_value(text: str) -> str:
    """`text` as a SageMaker tag value: letters, digits, spaces and _.:/=+-@ only, at most 256 characters."""
    return one_line(re.sub(r"[^\w\s.:/=+\-@]", " ", text), TAG_VALUE_LIMIT)
