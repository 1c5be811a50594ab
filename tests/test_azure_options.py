"""The `azure` provider's checks that need no workspace, and the emulator's request validation
against the SDK's REST models (fast: no emulator process, no TensorFlow)."""

from __future__ import annotations

import pytest

import cloudml
from cloudml.errors import ConfigError

pytest.importorskip("azure.ai.ml")


def test_options_are_typed_and_explain_what_is_wrong():
    with pytest.raises(ConfigError, match="is not an Azure subscription id"):
        cloudml.get_deployer("azure", subscription_id="my-sub")
    with pytest.raises(ConfigError, match="not a valid Azure ML workspace name"):
        cloudml.get_deployer("azure", workspace="x")
    with pytest.raises(ConfigError, match="auth_mode"):
        cloudml.get_deployer("azure", auth_mode="password")
    with pytest.raises(ConfigError, match="canary_percent"):
        cloudml.get_deployer("azure", canary_percent=100)
    with pytest.raises(ConfigError, match="environment reference"):
        cloudml.get_deployer("azure", environment="my env")
    deployer = cloudml.get_deployer("azure", environment="azureml:tf-serving:3", resource_manager_url="https://example.test/")
    assert deployer.options.resource_manager_url == "https://example.test"


def test_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLOUDML_AZURE_WORKSPACE", "team-ws")
    monkeypatch.setenv("CLOUDML_AZURE_INSTANCE_COUNT", "3")
    options = cloudml.get_deployer("azure").options
    assert (options.workspace, options.instance_count) == ("team-ws", 3)


def test_missing_workspace_settings_name_all_three(monkeypatch):
    for name in ("SUBSCRIPTION_ID", "RESOURCE_GROUP", "WORKSPACE"):
        monkeypatch.delenv(f"CLOUDML_AZURE_{name}", raising=False)
    with pytest.raises(ConfigError, match="subscription_id, resource_group, workspace") as caught:
        cloudml.get_deployer("azure").list()
    assert "CLOUDML_AZURE_SUBSCRIPTION_ID" in caught.value.hint


def test_instance_types_and_names_are_checked_with_suggestions():
    from cloudml.providers.azure.environment import check_endpoint_name, check_instance_type

    check_instance_type("Standard_DS3_v2")
    with pytest.raises(ConfigError) as caught:
        check_instance_type("standard_ds3_v3")
    assert "did you mean Standard_DS3_v2" in caught.value.hint
    check_endpoint_name("fraud-model")
    for bad in ("ab", "1model", "model-", "a" * 33, "my--model"):
        with pytest.raises(ConfigError, match="cannot name an Azure ML online endpoint"):
            check_endpoint_name(bad)


def test_emulator_checks_bodies_against_the_sdks_rest_models():
    from cloudml.emulators.azure.validation import InvalidBody, check

    check("OnlineEndpoint", {"location": "eastus", "properties": {"authMode": "Key", "traffic": {"blue": 100}}, "tags": {"a": "b"}})
    check("OnlineDeployment", {"location": "eastus", "sku": {"name": "Default", "capacity": 2},
                               "properties": {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2", "model": "m"}})
    refused = {
        "unknown property": ("OnlineEndpoint", {"location": "eastus", "properties": {"authMode": "Key", "trafic": {}}}),
        "required": ("OnlineEndpoint", {"location": "eastus", "properties": {}}),
        "must be an integer": ("OnlineDeployment", {"location": "e", "sku": {"name": "Default", "capacity": "two"},
                                                    "properties": {"endpointComputeType": "Managed"}}),
        "not a valid endpointComputeType": ("OnlineDeployment", {"location": "e", "properties": {"endpointComputeType": "Serverless"}}),
        "must be a JSON object": ("ModelVersion", {"properties": ["modelUri"]}),
    }
    for expected, (model, body) in refused.items():
        with pytest.raises(InvalidBody, match=expected):
            check(model, body)


def test_the_cloud_metadata_is_what_mlclient_needs():
    from azure.ai.ml._azure_environments import EndpointURLS

    from cloudml.providers.azure.session import cloud_metadata

    metadata = cloud_metadata("https://127.0.0.1:8443")
    needed = {EndpointURLS.AZURE_PORTAL_ENDPOINT, EndpointURLS.RESOURCE_MANAGER_ENDPOINT, EndpointURLS.ACTIVE_DIRECTORY_ENDPOINT,
              EndpointURLS.AML_RESOURCE_ID, EndpointURLS.STORAGE_ENDPOINT, EndpointURLS.REGISTRY_DISCOVERY_ENDPOINT}
    assert needed <= set(metadata) and metadata["resource_manager"] == "https://127.0.0.1:8443/"
