"""What an Azure ML deploy asks for, decided without a workspace: the names of the model and the
deployment, the traffic steps of a roll-out, and which deployment is live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudml.contract import Runtime
from cloudml.errors import ConfigError
from cloudml.providers.azure.environment import check_instance_type
from cloudml.providers.azure.options import AzureOptions
from cloudml.providers.cloud import CloudPlan, serving_choice
from cloudml.providers.common import artifact_prefix, short_hash
from cloudml.providers.served import FRAMEWORK, NOT_ONNX, RUNTIME, one_line, served_details
from cloudml.spec import DeploymentSpec

TAG_DEPLOYMENT = "cloudml-deployment"
TAG_HASH = "cloudml-model-hash"
TAG_VERSION = "cloudml-model-version"
# How the package is served: tagged where the version is, and moving with it.
SERVED_TAGS = {"cloudml-runtime": RUNTIME, "cloudml-framework": FRAMEWORK, "cloudml-not-onnx-because": NOT_ONNX}  # -> the details key
TAG_VALUE_LIMIT = 256
ARTIFACT_PREFIX = "cloudml"  # of the blobs in the workspace's datastore (not an option, unlike the other clouds' prefix)


@dataclass(frozen=True)
class AzurePlan(CloudPlan):
    model_name: str
    deployment_name: str
    instance_type: str
    instance_count: int

    @property
    def blob_prefix(self) -> str:
        return f"{artifact_prefix(ARTIFACT_PREFIX, self.name)}{self.hash_hex[:16]}/model"


def make_plan(spec: DeploymentSpec, model_hash: str, options: AzureOptions) -> AzurePlan:
    resources = spec.resources
    instance_type = resources.instance_type or options.instance_type
    check_instance_type(instance_type)
    if resources.max_replicas is not None:
        raise ConfigError(
            "the azure provider does not set up autoscaling",
            hint="drop --max-replicas and set the instance count with --min-replicas or -o instance_count=N "
                 "(autoscale rules for online endpoints live in Azure Monitor)",
        )
    count = max(options.instance_count, resources.min_replicas, 1)
    serving = options.environment or serving_choice(spec, options)
    # A deployment's settings are part of its identity: another instance type or image is a
    # new deployment (blue/green), the same ones are "unchanged".
    key = short_hash(instance_type, count, serving, sorted(spec.env.items()))
    hex_ = model_hash.split(":")[-1]
    return AzurePlan(name=spec.name, model_hash=model_hash, model_name=model_name(spec.name),
                     deployment_name=f"cml-{hex_[:10]}-{key[:5]}", instance_type=instance_type, instance_count=count)


def model_name(deployment: str) -> str:
    """The workspace model whose versions hold this deployment's models."""
    return f"cloudml-{deployment}"


def live_deployment(traffic: Mapping[str, int] | None) -> str | None:
    """The deployment taking the largest share of the endpoint's traffic (None: none takes any)."""
    shares = {name: share for name, share in (traffic or {}).items() if share}
    return max(shares, key=shares.__getitem__) if shares else None


def traffic_steps(new: str, live: str | None, canary_percent: int | None) -> list[dict[str, int]]:
    """The traffic splits an update goes through: a canary share first when asked (and something
    else serves), then everything on the new deployment."""
    steps: list[dict[str, int]] = []
    if live and live != new and canary_percent:
        steps.append({new: canary_percent, live: 100 - canary_percent})
    steps.append({new: 100})
    return steps


def cloudml_tags(spec: DeploymentSpec, plan: AzurePlan, *, version: int | None = None, runtime: Runtime | None = None) -> dict[str, str]:
    """The user's tags with cloudml's, which win; `version` and `runtime` are those of the package
    a run rolls out (given only where the version is tagged)."""
    tags = {**spec.tags, TAG_DEPLOYMENT: spec.name, TAG_HASH: plan.model_hash}
    if version is not None:
        tags[TAG_VERSION] = str(version)
    if runtime is not None:
        shown = served_details(runtime)
        tags.update({tag: one_line(shown[key], TAG_VALUE_LIMIT) for tag, key in SERVED_TAGS.items() if key in shown})
    return tags


def served_shown(tags: dict[str, str]) -> dict[str, str]:
    """The `details` entries the served tags hold."""
    return {key: tags[tag] for tag, key in SERVED_TAGS.items() if tags.get(tag)}


def state(resource: Any) -> str:
    """provisioning_state as a lower-case word (the SDK returns enums or strings); "" for None."""
    value = getattr(resource, "provisioning_state", None)
    value = getattr(value, "value", value)
    return str(value or "").lower()
