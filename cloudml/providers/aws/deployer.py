"""The `aws` provider: SageMaker real-time endpoints.

One deployment is one SageMaker endpoint of the same name with one production variant. Model and
EndpointConfig names carry the model's content hash, so a re-run finds what an earlier run made
and the same model twice changes nothing. Every resource cloudml makes is tagged
`cloudml:deployment` / `cloudml:model-hash`; `list` and `delete` go by those tags.
"""

from __future__ import annotations

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
from cloudml.providers.aws import artifacts, logs, scaling
from cloudml.providers.aws.images import check_instance_type, tensorflow_image
from cloudml.providers.aws.options import AwsOptions
from cloudml.providers.aws.session import AwsSession, aws_errors, error_code, error_message, is_not_found, tag_list, tags_dict
from cloudml.providers.base import Deployer
from cloudml.providers.common import WaitTimedOut, container_error, short_hash, wait_while_busy
from cloudml.results import Deployment, DeploymentStatus, DeployResult, Prediction, utcnow
from cloudml.spec import DeploymentSpec

VARIANT = "primary"
TAG_DEPLOYMENT = "cloudml:deployment"
TAG_HASH = "cloudml:model-hash"
TAG_VERSION = "cloudml:model-version"
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
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Plan:
    """What a deploy asks for, resolved to SageMaker names."""

    name: str
    model_hash: str
    model_name: str
    config_name: str
    instance_type: str
    instance_count: int
    min_replicas: int
    max_replicas: int | None

    @property
    def hash_hex(self) -> str:
        return self.model_hash.split(":")[-1]


class SageMakerDeployer(Deployer):
    provider = "aws"
    Options = AwsOptions
    options: AwsOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._aws: AwsSession | None = None

    @property
    def aws(self) -> AwsSession:
        if self._aws is None:
            self._aws = AwsSession(self.options)
        return self._aws

    # --- deploy ---------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec) -> DeployResult:
        role = self._role()
        source = inspect_source(spec.model)
        with self.progress.step(f"hashing {source.display_name}"):
            model_hash = source_hash(source)
        plan = self._plan(spec, model_hash, role)
        current = self._endpoint(spec.name)
        current_tags = self._tags(current["EndpointArn"]) if current is not None else {}
        if current is not None and current_tags.get(TAG_DEPLOYMENT) != spec.name:
            raise ConfigError(
                f"a SageMaker endpoint named {spec.name!r} already exists and was not created by cloudml",
                hint="cloudml never takes over endpoints it did not make: choose another --name",
            )
        if current is not None:
            current = self._settle(current, plan)
        # The endpoint's autoscaling registration, as it was before this run (None: not registered).
        target = scaling.current_target(self.aws, spec.name, VARIANT) if current is not None else None
        if current is not None and self._unchanged(current, plan, target):
            self._retag(current, current_tags, spec, plan, version=None)
            return DeployResult(action="unchanged", deployment=self.get(spec.name))
        if current is not None and current["EndpointStatus"] == "Failed":
            # A failed endpoint serves nothing and SageMaker cannot update it: replace it.
            self.progress.note(f"endpoint {spec.name} is Failed ({current.get('FailureReason', 'no reason given')}); recreating it")
            self._delete_endpoint(spec.name)
            current = None
            target = scaling.current_target(self.aws, spec.name, VARIANT)

        work = Path(self.options.work_dir or Path(os.environ.get("CLOUDML_HOME") or Path.home() / ".cloudml") / "aws-packages") / spec.name / plan.hash_hex[:16]
        checks = " and probing it locally (preflight)" if self.options.preflight else ""
        with self.progress.step(f"packaging {source.display_name}{checks}"):
            packaged = prepare_model(source, work, name=spec.name, version=spec.model_version, probe=self.options.preflight)
        image = self.options.image_uri or tensorflow_image(
            region=self.aws.region, tensorflow_version=packaged.manifest.tensorflow_version, instance_type=plan.instance_type,
        )

        bucket = self.options.bucket or artifacts.default_bucket(self.aws)
        key = f"{self.options.prefix}/{spec.name}/{plan.hash_hex[:16]}/model.tar.gz".lstrip("/")
        created: list[tuple[str, str]] = []  # what this run made, undone in reverse if it fails
        tags = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: model_hash, TAG_VERSION: str(packaged.manifest.model_version)}
        try:
            with self.progress.step(f"uploading model.tar.gz to s3://{bucket}/{key}"):
                artifacts.ensure_bucket(self.aws, bucket)
                if artifacts.upload_archive(self.aws, packaged.archive, bucket=bucket, key=key, tags={TAG_DEPLOYMENT: spec.name, TAG_HASH: model_hash}):
                    created.append(("object", key))
            if self._create_model(plan, image=image, model_data=f"s3://{bucket}/{key}", role=role, env=spec.env, tags=tags):
                created.append(("model", plan.model_name))
            if self._create_config(plan, count=self._instance_count(current, plan, target), tags=tags):
                created.append(("config", plan.config_name))
            if current is None:
                with aws_errors(f"creating endpoint {spec.name}"):
                    self.aws.sagemaker.create_endpoint(EndpointName=spec.name, EndpointConfigName=plan.config_name, Tags=tag_list(tags))
                created.append(("endpoint", spec.name))
                self._check_created(spec.name, self._wait(spec.name, "to become InService"))
                action = "created"
            else:
                self._update(current, plan, target)
                self._retag(current, current_tags, spec, plan, version=packaged.manifest.model_version)
                action = "updated"
            self._apply_scaling(plan, target)
        except WaitTimedOut:
            raise
        except Exception:
            self._undo(created, bucket=bucket)
            raise
        self._remove_owned(spec.name, keep=frozenset({plan.model_name, plan.config_name}))
        shutil.rmtree(work, ignore_errors=True)  # kept only while a re-run could reuse it
        return DeployResult(action=action, deployment=self.get(spec.name))

    def _role(self) -> str:
        if not self.options.role_arn:
            raise ConfigError(
                "the aws provider needs a SageMaker execution role",
                hint="pass -o role_arn=arn:aws:iam::<account>:role/<name>, set aws: {role_arn: ...} in cloudml.yaml, "
                     "or export CLOUDML_AWS_ROLE_ARN (the role must trust sagemaker.amazonaws.com; see the README)",
            )
        return self.options.role_arn

    def _plan(self, spec: DeploymentSpec, model_hash: str, role: str) -> Plan:
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
        model_key = short_hash(model_hash, role, self.options.image_uri, gpu, spec.env, self.options.kms_key_id)
        model_name = f"{spec.name}-{hex_[:8]}-{model_key[:6]}"
        config_key = short_hash(model_name, instance_type, count, self.options.kms_key_id)
        return Plan(
            name=spec.name, model_hash=model_hash, model_name=model_name, config_name=f"{spec.name}-{hex_[:8]}-{config_key[:6]}",
            instance_type=instance_type, instance_count=count, min_replicas=max(resources.min_replicas, 1), max_replicas=resources.max_replicas,
        )

    def _settle(self, current: dict, plan: Plan) -> dict:
        """An endpoint busy with *this* plan (an earlier run timed out or was interrupted) is
        waited for; one busy with something else is refused."""
        if current["EndpointStatus"] not in BUSY:
            return current
        if current["EndpointStatus"] != "Deleting" and self._target_config(current) == plan.config_name:
            self.progress.note(f"endpoint {plan.name} is already {current['EndpointStatus']} with this model; waiting for it")
            return self._wait(plan.name, "to finish")
        raise DeployFailed(
            f"endpoint {plan.name} is {current['EndpointStatus']} with another change",
            hint=f"wait until `cloudml status {plan.name} --provider aws` shows it healthy, then deploy again",
        )

    def _target_config(self, endpoint: dict) -> str | None:
        pending = endpoint.get("PendingDeploymentSummary") or {}
        return pending.get("EndpointConfigName") or endpoint.get("EndpointConfigName")

    def _unchanged(self, current: dict, plan: Plan, target: dict | None) -> bool:
        if current["EndpointStatus"] != "InService" or current.get("EndpointConfigName") != plan.config_name:
            return False
        if plan.max_replicas is None:
            return True
        return bool(target) and (target["MinCapacity"], target["MaxCapacity"]) == (plan.min_replicas, plan.max_replicas)

    def _instance_count(self, current: dict | None, plan: Plan, target: dict | None) -> int:
        """On update, keep the instances autoscaling chose (within the new bounds) instead of
        resetting the endpoint to its initial count."""
        if current is None or target is None:
            return plan.instance_count
        running = next((v.get("CurrentInstanceCount") for v in current.get("ProductionVariants", []) if v["VariantName"] == VARIANT), None)
        low = plan.min_replicas if plan.max_replicas is not None else target["MinCapacity"]
        high = plan.max_replicas if plan.max_replicas is not None else target["MaxCapacity"]
        return max(low, min(high, running or plan.instance_count))

    def _create_model(self, plan: Plan, *, image: str, model_data: str, role: str, env: dict[str, str], tags: dict[str, str]) -> bool:
        if self._exists("model", plan.model_name):
            return False
        container = {"Image": image, "ModelDataUrl": model_data, "Environment": dict(env)}
        with aws_errors(f"creating SageMaker model {plan.model_name}"):
            self.aws.sagemaker.create_model(ModelName=plan.model_name, PrimaryContainer=container, ExecutionRoleArn=role, Tags=tag_list(tags))
        return True

    def _create_config(self, plan: Plan, *, count: int, tags: dict[str, str]) -> bool:
        if self._exists("config", plan.config_name):
            return False
        variant = {"VariantName": VARIANT, "ModelName": plan.model_name, "InstanceType": plan.instance_type, "InitialInstanceCount": count, "InitialVariantWeight": 1.0}
        extra = {"KmsKeyId": self.options.kms_key_id} if self.options.kms_key_id else {}
        with aws_errors(f"creating endpoint configuration {plan.config_name}"):
            self.aws.sagemaker.create_endpoint_config(EndpointConfigName=plan.config_name, ProductionVariants=[variant], Tags=tag_list(tags), **extra)
        return True

    def _exists(self, kind: str, name: str) -> bool:
        from botocore.exceptions import ClientError

        call = {"model": lambda: self.aws.sagemaker.describe_model(ModelName=name),
                "config": lambda: self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=name)}[kind]
        with aws_errors(f"looking up {kind} {name}"):
            try:
                call()
                return True
            except ClientError as exc:
                if is_not_found(exc):
                    return False
                raise

    def _update(self, current: dict, plan: Plan, target: dict | None) -> None:
        opts = self.options
        if opts.canary_percent:
            routing = {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": opts.canary_percent}, "WaitIntervalInSeconds": opts.canary_wait_seconds}
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
        previous = current["EndpointConfigName"]
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

    def _retag(self, current: dict, have: dict[str, str], spec: DeploymentSpec, plan: Plan, *, version: int | None) -> None:
        wanted = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash}
        if version is not None:
            wanted[TAG_VERSION] = str(version)
        changed = {k: v for k, v in wanted.items() if have.get(k) != v}
        if changed:
            with aws_errors(f"tagging endpoint {spec.name}"):
                self.aws.sagemaker.add_tags(ResourceArn=current["EndpointArn"], Tags=tag_list(changed))

    def _apply_scaling(self, plan: Plan, target: dict | None) -> None:
        """`target`: the registration before this run; an update that lifted it put it back as it was."""
        if plan.max_replicas is None:
            return  # an existing registration is kept: updates never drop autoscaling
        if target and (target["MinCapacity"], target["MaxCapacity"]) == (plan.min_replicas, plan.max_replicas):
            return
        with self.progress.step(f"autoscaling {plan.name} between {plan.min_replicas} and {plan.max_replicas} instances"):
            scaling.register(self.aws, plan.name, VARIANT, min_replicas=plan.min_replicas, max_replicas=plan.max_replicas,
                             target_value=self.options.target_invocations_per_instance)

    def _undo(self, created: list[tuple[str, str]], *, bucket: str) -> None:
        """Remove what a failed run made, newest first, so nothing is orphaned. Best effort:
        the error that made the run fail is the one the user sees."""
        for kind, name in reversed(created):
            try:
                if kind == "endpoint":
                    self._delete_endpoint(name)
                elif kind == "object":
                    self.aws.s3.delete_object(Bucket=bucket, Key=name)
                else:
                    self._delete_resource(kind, name)
            except Exception as exc:  # noqa: BLE001 - report and keep undoing the rest
                self.progress.note(f"could not remove {kind} {name} after the failure: {exc}")

    def _remove_owned(self, name: str, *, keep: frozenset[str] = frozenset()) -> bool:
        """Delete this deployment's Models and EndpointConfigs except those in `keep` (after an
        update: the previous version's; on delete: all). True when any went."""
        removed = False
        for kind, resource in self._owned(name):
            if resource not in keep:
                self._delete_resource(kind, resource)
                removed = True
        return removed

    def _delete_resource(self, kind: str, name: str) -> None:
        with aws_errors(f"deleting {kind} {name}"):
            if kind == "config":
                self.aws.sagemaker.delete_endpoint_config(EndpointConfigName=name)
            else:
                self.aws.sagemaker.delete_model(ModelName=name)

    def _owned(self, name: str) -> list[tuple[str, str]]:
        """(kind, name) of every Model and EndpointConfig tagged as this deployment's."""
        sm = self.aws.sagemaker
        found = []
        with aws_errors(f"listing the resources of {name}"):
            for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=name):
                for item in page["EndpointConfigs"]:
                    if self._tags(item["EndpointConfigArn"]).get(TAG_DEPLOYMENT) == name:
                        found.append(("config", item["EndpointConfigName"]))
            for page in sm.get_paginator("list_models").paginate(NameContains=name):
                for item in page["Models"]:
                    if self._tags(item["ModelArn"]).get(TAG_DEPLOYMENT) == name:
                        found.append(("model", item["ModelName"]))
        return found

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

    def _owned_endpoint(self, name: str) -> tuple[dict, dict[str, str]]:
        endpoint = self._endpoint(name)
        if endpoint is None:
            raise DeploymentNotFound(f"no SageMaker endpoint named {name!r} in {self.aws.region}", hint="`cloudml list --provider aws` shows what cloudml deployed")
        tags = self._tags(endpoint["EndpointArn"])
        if tags.get(TAG_DEPLOYMENT) != name:
            raise DeploymentNotFound(
                f"SageMaker endpoint {name!r} was not created by cloudml (no {TAG_DEPLOYMENT} tag)",
                hint="cloudml only manages what it created; pick another deployment name",
            )
        return endpoint, tags

    def get(self, name: str) -> Deployment:
        endpoint, tags = self._owned_endpoint(name)
        return self._to_deployment(endpoint, tags)

    def _to_deployment(self, endpoint: dict, tags: dict[str, str]) -> Deployment:
        name = endpoint["EndpointName"]
        variant = next((v for v in endpoint.get("ProductionVariants", []) if v["VariantName"] == VARIANT), {})
        details: dict[str, Any] = {
            "endpoint_arn": endpoint["EndpointArn"],
            "endpoint_config": endpoint.get("EndpointConfigName"),
            "sagemaker_status": endpoint["EndpointStatus"],
            "instances": variant.get("CurrentInstanceCount"),
            "region": self.aws.region,
        }
        if endpoint.get("FailureReason"):
            details["failure_reason"] = endpoint["FailureReason"]
        target = scaling.current_target(self.aws, name, VARIANT)
        if target:
            details["autoscaling"] = f"{target['MinCapacity']}-{target['MaxCapacity']} instances"
        version = tags.get(TAG_VERSION)
        return Deployment(
            name=name, provider=self.provider, status=STATUS.get(endpoint["EndpointStatus"], DeploymentStatus.UNHEALTHY),
            endpoint_url=self.aws.runtime_url(name), model_version=int(version) if version and version.isdigit() else None,
            model_hash=tags.get(TAG_HASH), created_at=endpoint.get("CreationTime") or utcnow(),
            updated_at=endpoint.get("LastModifiedTime") or utcnow(),
            tags={k: v for k, v in tags.items() if not k.startswith("cloudml:")}, details=details,
        )

    def list(self) -> list[Deployment]:
        out = []
        with aws_errors("listing SageMaker endpoints"):
            for page in self.aws.sagemaker.get_paginator("list_endpoints").paginate():
                for item in page["Endpoints"]:
                    tags = self._tags(item["EndpointArn"])
                    if tags.get(TAG_DEPLOYMENT) == item["EndpointName"]:
                        endpoint = self._endpoint(item["EndpointName"])
                        if endpoint is not None:
                            out.append(self._to_deployment(endpoint, tags))
        return sorted(out, key=lambda d: d.name)

    def predict(self, name: str, *, instances: list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
        from botocore.exceptions import ClientError

        body: dict[str, Any] = {"instances": instances}
        if parameters:
            body["parameters"] = parameters
        started = time.perf_counter()
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
        payload = json.loads(response["Body"].read())
        return Prediction(deployment=name, predictions=payload["predictions"], latency_ms=(time.perf_counter() - started) * 1000)

    def logs(self, name: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        self._owned_endpoint(name)
        if follow:
            return logs.follow(self.aws, name, lines=tail)
        return iter(logs.tail(self.aws, name, tail))

    def _log_tail(self, name: str) -> str:
        try:
            lines = logs.tail(self.aws, name, LOG_TAIL_LINES)
        except Exception as exc:  # noqa: BLE001 - the failure matters more than its log
            return f"(could not read the CloudWatch log: {exc})"
        return "\n".join(lines) if lines else f"(no lines in CloudWatch log group {logs.log_group(name)} yet)"

    # --- delete ---------------------------------------------------------------------------
    def delete(self, name: str, *, purge: bool = False) -> bool:
        endpoint = self._endpoint(name)
        deleted = False
        if endpoint is not None:
            if self._tags(endpoint["EndpointArn"]).get(TAG_DEPLOYMENT) != name:
                raise DeploymentNotFound(f"SageMaker endpoint {name!r} was not created by cloudml; not deleting it")
            with self.progress.step(f"deleting endpoint {name}"):
                scaling.deregister(self.aws, name, VARIANT)
                self._delete_endpoint(name)
            deleted = True
        deleted = self._remove_owned(name) or deleted
        if purge:
            bucket = self.options.bucket or artifacts.default_bucket(self.aws)
            with aws_errors(f"deleting the model artifacts in s3://{bucket}"):
                deleted = artifacts.delete_prefix(self.aws, bucket=bucket, prefix=f"{self.options.prefix}/{name}/".lstrip("/")) > 0 or deleted
        return deleted

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

