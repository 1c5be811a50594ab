"""Offline checks that need no account: which SageMaker serving image can load the model, and
whether an instance type exists."""

from __future__ import annotations

from functools import lru_cache

from cloudml.errors import ConfigError, ModelError
from cloudml.providers.common import version_tuple


@lru_cache(maxsize=1)
def tensorflow_serving_versions() -> list[str]:
    """major.minor versions of the SageMaker TensorFlow inference images, oldest first
    (from sagemaker-core's offline image table)."""
    from sagemaker.core import image_uris

    versions = image_uris.config_for_framework("tensorflow")["inference"]["versions"]
    minors = {".".join(v.split(".")[:2]) for v in versions}
    return sorted(minors, key=version_tuple)


def tensorflow_image(*, region: str, tensorflow_version: str, instance_type: str) -> str:
    """The SageMaker TF Serving image that can load a SavedModel written by `tensorflow_version`.

    A SavedModel loads in the TensorFlow that wrote it and in newer ones, not reliably in older
    ones (new ops, new serialisation): the image must be at least the model's major.minor.
    """
    from sagemaker.core import image_uris

    wanted = version_tuple(tensorflow_version)[:2]
    available = tensorflow_serving_versions()
    usable = [v for v in available if version_tuple(v)[0] == wanted[0] and version_tuple(v) >= wanted]
    if not usable:
        newest = available[-1]
        raise ModelError(
            f"no SageMaker TensorFlow Serving image can load this model: it was saved by TensorFlow "
            f"{tensorflow_version} and the newest image is tensorflow-inference:{newest}",
            hint=f"save the model with TensorFlow {newest} or older, or serve it with the cloudml runtime image "
                 "(-o build_image=true builds and pushes it, no Docker needed), or your own with -o image_uri=IMAGE",
        )
    try:
        return image_uris.retrieve("tensorflow", region=region, version=usable[0], image_scope="inference", instance_type=instance_type)
    except ValueError as exc:
        raise ConfigError(f"no SageMaker TensorFlow image for region {region!r} and instance type {instance_type!r}: {exc}") from None


@lru_cache(maxsize=1)
def instance_types() -> frozenset[str]:
    """The real-time inference instance types SageMaker's API accepts (botocore's service model)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProductionVariantInstanceType").enum)


def check_instance_type(instance_type: str) -> None:
    known = instance_types()
    if instance_type in known:
        return
    import difflib

    close = difflib.get_close_matches(instance_type, sorted(known), n=3, cutoff=0.6)
    raise ConfigError(
        f"{instance_type!r} is not a SageMaker real-time inference instance type",
        hint=(f"did you mean {', '.join(close)}? " if close else "") + "instance types look like ml.m5.large or ml.g5.xlarge",
    )
