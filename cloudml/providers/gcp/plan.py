"""What a Vertex AI deploy asks for, worked out from the spec and the model hash alone (no cloud
calls): the Model id, machine and replicas, the labels, and how traffic is shared."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cloudml.contract import Manifest
from cloudml.errors import ConfigError
from cloudml.providers.cloud import CloudPlan
from cloudml.providers.common import short_hash
from cloudml.providers.gcp.options import check_machine_type
from cloudml.providers.served import FRAMEWORK, NOT_ONNX, RUNTIME, one_line, served_details
from cloudml.spec import DeploymentSpec

LABEL_DEPLOYMENT = "cloudml-deployment"
LABEL_HASH = "cloudml-model-hash"
LABEL_VERSION = "cloudml-model-version"
LABEL_OPERATION = "cloudml-operation"  # id of the deployModel operation in flight
LABEL_PENDING_MODEL = "cloudml-pending-model"  # the Model that operation deploys
# How the package is served, as `label_text` encodes it; these move with the version label.
LABEL_RUNTIME = "cloudml-runtime"
LABEL_FRAMEWORK = "cloudml-framework"
LABEL_NOT_ONNX = "cloudml-not-onnx-because"
SERVED_LABELS = {LABEL_VERSION: None, LABEL_RUNTIME: RUNTIME, LABEL_FRAMEWORK: FRAMEWORK, LABEL_NOT_ONNX: NOT_ONNX}  # -> the details key
OWN_LABELS = (LABEL_DEPLOYMENT, LABEL_HASH, LABEL_OPERATION, LABEL_PENDING_MODEL, *SERVED_LABELS)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class VertexPlan(CloudPlan):
    model_id: str  # NAME-<model hash>-<settings hash>: a re-run finds the Model an earlier run uploaded
    machine_type: str
    min_replicas: int
    max_replicas: int
    labels: dict[str, str]  # of the endpoint and the Model (the model version is added once it is known)


def check_spec(spec: DeploymentSpec, *, default_machine_type: str) -> None:
    """Refuse what Vertex cannot do with this spec: a bad machine type, no replica, tags that
    are not labels or use cloudml's own keys."""
    check_machine_type(spec.resources.instance_type or default_machine_type)
    if spec.resources.min_replicas < 1:
        raise ConfigError("Vertex AI endpoints keep at least one replica", hint="use --min-replicas 1 or more")
    for key, value in spec.tags.items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise ConfigError(
                f"tag {key}={value} cannot be a Google Cloud label",
                hint="label keys start with a lowercase letter; keys and values hold at most 63 lowercase letters, digits, '_' and '-'",
            )
        if key.startswith("cloudml-"):
            raise ConfigError(f"tag {key!r} is reserved for cloudml", hint="choose a key that does not start with cloudml-")


def hash_label(model_hash: str) -> str:
    """GCP label values hold at most 63 characters: the first 63 of the sha256 hex."""
    return model_hash.split(":")[-1][:63]


def served_labels(manifest: Manifest) -> dict[str, str]:
    """The model version and how its package is served, as the labels that move together when a
    run completes."""
    labels = {LABEL_VERSION: str(manifest.model_version)}
    shown = served_details(manifest.runtime)
    for label, key in SERVED_LABELS.items():
        if key is not None and key in shown:
            labels[label] = text_label(shown[key])
    return labels


def served_shown(labels: dict[str, str]) -> dict[str, str]:
    """The `details` entries the served labels hold, read back."""
    return {key: label_text(labels[label]) for label, key in SERVED_LABELS.items() if key is not None and labels.get(label)}


def text_label(text: str) -> str:
    """Free text as a label value (at most 63 lowercase letters, digits, '_' and '-'): lowercased,
    a space becomes '-' and a dot '_', what else no label holds is dropped, and a longer text is
    cut at a word. `label_text` reads "tensorflow-2_21_0" back as "tensorflow 2.21.0"."""
    kept = re.sub(r"[^a-z0-9 .]", "", re.sub(r"[-_\s]+", " ", text.lower()))
    return one_line(kept, 63).replace(" ", "-").replace(".", "_")


def label_text(value: str) -> str:
    return value.replace("-", " ").replace("_", ".")


def plan_deployment(spec: DeploymentSpec, model_hash: str, *, default_machine_type: str, image_uri: str | None,
                    location: str, serving: Any = None) -> VertexPlan:
    """`serving`: cloud.serving_choice (default: image_uri alone)."""
    resources = spec.resources
    # Everything the Model resource holds (image, env) is part of its id.
    key = short_hash(model_hash, image_uri if serving is None else serving, spec.env, location)
    return VertexPlan(
        name=spec.name, model_hash=model_hash, model_id=f"{spec.name}-{model_hash.split(':')[-1][:8]}-{key[:6]}",
        machine_type=resources.instance_type or default_machine_type,
        min_replicas=resources.min_replicas, max_replicas=resources.max_replicas or resources.min_replicas,
        labels={**spec.tags, LABEL_DEPLOYMENT: spec.name, LABEL_HASH: hash_label(model_hash)},
    )


def canary_split(serving: dict[str, int], canary_percent: int | None) -> dict[str, int]:
    """The traffic split of a deployModel beside what serves now: "0" (the model being deployed)
    gets the canary share, what serves keeps the rest in its proportions; a first deploy gets all."""
    serving = {k: v for k, v in serving.items() if v > 0}
    if not serving:
        return {"0": 100}
    share = canary_percent or 0
    return {"0": share, **scaled(serving, 100 - share)}


def scaled(split: dict[str, int], total: int) -> dict[str, int]:
    """`split` rescaled to add up to `total` (integers; the remainder goes to the largest)."""
    if not split:
        return {}
    whole = sum(split.values())
    out = {k: v * total // whole for k, v in split.items()}
    out[max(split, key=lambda k: split[k])] += total - sum(out.values())
    return {k: v for k, v in out.items() if v > 0}
