"""Typed options of the `gcp` provider (flags `-o key=value`, `gcp:` in cloudml.yaml,
`CLOUDML_GCP_<KEY>` variables)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from cloudml.providers.cloud import CloudOptions

PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
SERVICE_ACCOUNT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|^[0-9]+-compute@developer\.gserviceaccount\.com$")
MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z]+-[0-9]+[a-z]*$")


def machine_type_problem(value: str) -> str:
    return f"{value!r} is not a Compute Engine machine type (like n1-standard-2 or e2-standard-4)"


def check_machine_type(value: str) -> None:
    """The form of a machine type (which ones Vertex offers in a region, only the service knows)."""
    from cloudml.errors import ConfigError

    if not MACHINE_TYPE.match(value):
        raise ConfigError(machine_type_problem(value), hint="see https://cloud.google.com/vertex-ai/docs/predictions/configure-compute#machine-types")


class GcpOptions(CloudOptions):
    """The gcp options beside what every cloud accepts (image_uri, canary_percent, wait_timeout, ...)."""

    project: str | None = Field(default=None, description="Google Cloud project id; default: the ADC project or GOOGLE_CLOUD_PROJECT.")
    location: str = Field(default="us-central1", description="Vertex AI region of the model and endpoint.")
    staging_bucket: str | None = Field(default=None,
                                       description="GCS bucket for the model folders (gs://name or name); default <project>-cloudml, created in `location` "
                                                   "if absent.")
    prefix: str = Field(default="cloudml", description="Object prefix inside the bucket.")
    machine_type: str = Field(default="n1-standard-2", description="Default when the spec sets no resources.instance_type.")
    service_account: str | None = Field(default=None,
                                        description="Service account the model server runs as (needs roles/iam.serviceAccountUser for the caller); default: "
                                                    "Vertex's.")
    credentials: str | None = Field(default=None,
                                    description="Path to a service-account or ADC JSON file, or 'anonymous' (emulators); default: Application Default "
                                                "Credentials.")
    api_endpoint: str | None = Field(default=None,
                                     description="Vertex AI API endpoint override (a private endpoint, the cloudml emulator as http://127.0.0.1:PORT); "
                                                 "default <location>-aiplatform.googleapis.com.")
    logging_endpoint: str | None = Field(default=None, description="Cloud Logging API endpoint override; default https://logging.googleapis.com.")
    artifact_registry_endpoint: str | None = Field(default=None,
                                                   description="Artifact Registry API endpoint override; default https://artifactregistry.googleapis.com.")
    registry_host: str | None = Field(default=None,
                                      description="Docker registry host of the Artifact Registry repository (the cloudml emulator's 127.0.0.1:PORT); "
                                                  "default <location>-docker.pkg.dev.")
    poll_interval: float = Field(default=10.0, gt=0, description="Seconds between operation polls while waiting.")

    @field_validator("project", "credentials", "api_endpoint", "logging_endpoint", "image_uri", "staging_bucket", "service_account",
                     "artifact_registry_endpoint", "registry_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty CLOUDML_GCP_* variable means "not set", as with the other providers' defaults.
        return None if value == "" else value

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str | None) -> str | None:
        if value is not None and not PROJECT_ID.match(value):
            raise ValueError(f"{value!r} is not a Google Cloud project id (6-30 lowercase letters, digits and hyphens, starting with a letter)")
        return value

    @field_validator("location")
    @classmethod
    def _check_location(cls, value: str) -> str:
        if not LOCATION.match(value):
            raise ValueError(f"{value!r} is not a Google Cloud region (like us-central1 or europe-west4)")
        return value

    @field_validator("staging_bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.removeprefix("gs://").strip("/")
        if not BUCKET_NAME.match(name) or ".." in name:
            raise ValueError(f"{value!r} is not a valid GCS bucket name (3-63 lowercase letters, digits, dots, hyphens, underscores)")
        return name

    @field_validator("service_account")
    @classmethod
    def _check_service_account(cls, value: str | None) -> str | None:
        if value is not None and not SERVICE_ACCOUNT.match(value):
            raise ValueError(f"{value!r} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)")
        return value

    @field_validator("machine_type")
    @classmethod
    def _check_machine_type(cls, value: str) -> str:
        if not MACHINE_TYPE.match(value):
            raise ValueError(machine_type_problem(value))
        return value

    @field_validator("prefix")
    @classmethod
    def _strip_prefix(cls, value: str) -> str:
        return value.strip("/")
