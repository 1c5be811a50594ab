"""Typed options of the `azure` provider (flags `-o key=value`, `azure:` in cloudml.yaml,
`CLOUDML_AZURE_<KEY>` variables)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from cloudml.providers.cloud import CloudOptions

SUBSCRIPTION_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
WORKSPACE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
ENVIRONMENT = re.compile(r"^(azureml:)?[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}(:[^:@/]+|@latest)$")


class AzureOptions(CloudOptions):
    """The shared cloud options (image_uri, canary, waits, preflight, work_dir) and Azure ML's."""

    subscription_id: str | None = Field(default=None, description="Azure subscription id (a GUID) that holds the workspace.")
    resource_group: str | None = Field(default=None, description="Resource group of the Azure ML workspace.")
    workspace: str | None = Field(default=None, description="Azure ML workspace name.")
    instance_type: str = Field(default="Standard_DS3_v2", description="Managed online endpoint VM SKU when the spec sets no resources.instance_type.")
    instance_count: int = Field(default=1, ge=1, le=20, description="Instances of the deployment (at least min_replicas).")
    auth_mode: Literal["key", "aml_token"] = Field(default="key",
                                                   description="How callers authenticate at the scoring URI: endpoint key, or an Azure ML token.")
    image_uri: str | None = Field(default=None,
                                  description="A cloudml serving image (`cloudml image build MODEL --push ACR/REPO`; built by the deploy when unset), "
                                              "run as a custom container with liveness GET /, readiness GET /ready and scoring POST /score on port 8080.")
    environment: str | None = Field(default=None,
                                    description="An existing Azure ML environment to serve with instead of image_uri (azureml:<name>:<version> or "
                                                "<name>@latest); it must declare the same inference routes.")
    canary_wait_seconds: int = Field(default=60, ge=0, le=3600, description="How long a canary runs before the rest of the traffic moves.")
    resource_manager_url: str | None = Field(default=None,
                                             description="A custom Azure Resource Manager endpoint (a sovereign or private cloud, the cloudml emulator); "
                                                         "default: Azure public cloud.")
    storage_url: str | None = Field(default=None,
                                    description="Blob service URL of the workspace's default datastore when it is not https://<account>.blob.<cloud suffix> "
                                                "(Azurite in the emulator).")

    @field_validator("subscription_id")
    @classmethod
    def _check_subscription(cls, value: str | None) -> str | None:
        if value is not None and not SUBSCRIPTION_ID.match(value):
            raise ValueError(f"{value!r} is not an Azure subscription id (a GUID such as 00000000-0000-0000-0000-000000000000; `az account show --query id`)")
        return value

    @field_validator("resource_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and (not RESOURCE_GROUP.match(value) or value.endswith(".")):
            raise ValueError(f"{value!r} is not a valid resource group name (1-90 letters, digits, '-', '_', '.', '(', ')'; not ending with '.')")
        return value

    @field_validator("workspace")
    @classmethod
    def _check_workspace(cls, value: str | None) -> str | None:
        if value is not None and not WORKSPACE.match(value):
            raise ValueError(f"{value!r} is not a valid Azure ML workspace name (3-33 letters, digits, '-' and '_', starting with a letter or digit)")
        return value

    @field_validator("environment")
    @classmethod
    def _check_environment(cls, value: str | None) -> str | None:
        if value is not None and not ENVIRONMENT.match(value):
            raise ValueError(f"{value!r} is not an environment reference: use azureml:<name>:<version> or <name>@latest")
        return value

    @field_validator("resource_manager_url", "storage_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value
