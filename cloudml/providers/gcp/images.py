"""Offline check of which Vertex AI prebuilt TensorFlow serving image can load the model."""

from __future__ import annotations

import re
from functools import lru_cache

from cloudml.errors import ModelError
from cloudml.providers.common import version_tuple

_TF2_CPU = re.compile(r"^(?P<region>[a-z]+)-docker\.pkg\.dev/vertex-ai/prediction/tf2-cpu\.(?P<major>\d+)-(?P<minor>\d+):latest$")


@lru_cache(maxsize=1)
def tensorflow_serving_versions() -> list[tuple[int, int]]:
    """(major, minor) of the Vertex prebuilt `tf2-cpu.M-N` prediction images, oldest first.

    The table is the one google-cloud-aiplatform ships for its own image checks
    (google.cloud.aiplatform.constants.prediction.TF_CONTAINER_URIS, mirroring
    https://cloud.google.com/vertex-ai/docs/predictions/pre-built-containers), so it moves with
    the installed SDK and needs no network.
    """
    from google.cloud.aiplatform.constants import prediction

    found = {(int(m["major"]), int(m["minor"])) for uri in prediction.TF_CONTAINER_URIS if (m := _TF2_CPU.match(uri))}
    return sorted(found)


def registry_region(location: str) -> str:
    """The Artifact Registry multi-region the prebuilt images are served from for `location`."""
    if location.startswith("europe"):
        return "europe"
    if location.startswith(("asia", "australia", "me-")):
        return "asia"
    return "us"


def tensorflow_image(*, location: str, tensorflow_version: str) -> str:
    """The prebuilt image that can load a SavedModel written by `tensorflow_version`: the oldest
    one at least as new as the model's major.minor (a SavedModel does not reliably load in an
    older TensorFlow than the one that wrote it)."""
    wanted = version_tuple(tensorflow_version)[:2]
    available = tensorflow_serving_versions()
    usable = [v for v in available if v[0] == wanted[0] and v >= wanted]
    if not usable:
        newest = "{}.{}".format(*available[-1])
        raise ModelError(
            f"no Vertex AI prebuilt TensorFlow image can load this model: it was saved by TensorFlow "
            f"{tensorflow_version} and the newest prebuilt image is tf2-cpu.{newest.replace('.', '-')}",
            hint=f"save the model with TensorFlow {newest} or older, or serve it with the cloudml runtime image "
                 "(-o build_image=true builds and pushes it, no Docker needed), or your own with -o image_uri=IMAGE",
        )
    major, minor = usable[0]
    return f"{registry_region(location)}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.{major}-{minor}:latest"


def is_prebuilt(image_uri: str) -> bool:
    return "-docker.pkg.dev/vertex-ai/prediction/" in image_uri
