"""The gcp provider's offline checks: typed options and the prebuilt TensorFlow image table
(no emulator, no account)."""

from __future__ import annotations

import pytest

import cloudml
from cloudml.errors import ConfigError, ModelError


@pytest.mark.parametrize("option, value, message", [
    ("location", "Mars", "is not a Google Cloud region"),
    ("project", "P", "is not a Google Cloud project id"),
    ("staging_bucket", "gs://No_Such..Bucket", "is not a valid GCS bucket name"),
    ("service_account", "me@gmail.com", "is not a service account email"),
    ("machine_type", "large", "is not a Compute Engine machine type"),
    ("canary_percent", "100", "canary_percent"),
    ("colour", "blue", "colour"),
])
def test_bad_options_are_refused_with_what_was_wrong(option, value, message):
    with pytest.raises(ConfigError) as refused:
        cloudml.get_deployer("gcp", **{option: value})
    assert message in refused.value.message


def test_options_come_from_the_environment_and_a_gs_prefix_is_accepted(monkeypatch):
    monkeypatch.setenv("CLOUDML_GCP_LOCATION", "europe-west4")
    monkeypatch.setenv("CLOUDML_GCP_PROJECT", "")  # empty means unset
    deployer = cloudml.get_deployer("gcp", staging_bucket="gs://my-bucket/")
    assert deployer.options.location == "europe-west4" and deployer.options.project is None
    assert deployer.options.staging_bucket == "my-bucket"


def test_prebuilt_image_is_the_oldest_that_can_load_the_model():
    from cloudml.providers.gcp.images import tensorflow_image, tensorflow_serving_versions

    versions = tensorflow_serving_versions()
    assert (2, 12) in versions and versions == sorted(versions)
    assert tensorflow_image(location="europe-west4", tensorflow_version="2.12.1") == "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-12:latest"
    assert tensorflow_image(location="us-central1", tensorflow_version="2.11.0").startswith("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11")
    newest = "{}.{}".format(*versions[-1])
    with pytest.raises(ModelError) as refused:
        tensorflow_image(location="us-central1", tensorflow_version="2.21.0")
    assert f"tf2-cpu.{newest.replace('.', '-')}" in refused.value.message and "image_uri" in refused.value.hint
