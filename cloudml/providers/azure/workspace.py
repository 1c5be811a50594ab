"""The Azure ML reads and deletes the provider makes, with Azure errors turned into cloudml errors
and a resource that is not there read as absent (None, [] or nothing to delete)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cloudml.providers.azure.session import azure_errors, is_not_found
from cloudml.providers.common import WaitTimedOut

T = TypeVar("T")


def or_absent(doing: str, call: Callable[[], T], absent: T) -> T:
    """`call()`, or `absent` when Azure ML answers that the resource does not exist."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - translated below
        if is_not_found(exc):
            return absent
        with azure_errors(doing):
            raise


def finish(poller: Any, goal: str, *, timeout: float) -> Any:
    """The operation's result once Azure ML finished it; WaitTimedOut (nothing undone) when it
    takes longer than `timeout`."""
    poller.wait(timeout=timeout)
    if not poller.done():
        raise WaitTimedOut(f"Azure ML did not finish within {timeout:.0f}s waiting for {goal}",
                           hint="Azure ML keeps working on it: run the same command again to resume")
    return poller.result()


def endpoint(ml: Any, name: str) -> Any | None:
    return or_absent(f"reading online endpoint {name}", lambda: ml.online_endpoints.get(name), None)


def deployment(ml: Any, endpoint_name: str, name: str) -> Any | None:
    return or_absent(f"reading deployment {name}", lambda: ml.online_deployments.get(name, endpoint_name), None)


def deployments(ml: Any, endpoint_name: str) -> list[Any]:
    return or_absent(f"listing the deployments of {endpoint_name}", lambda: list(ml.online_deployments.list(endpoint_name)), [])


def model_versions(ml: Any, model_name: str) -> list[Any]:
    """Every version of the model, archived ones included; [] for a model never registered."""
    from azure.ai.ml.constants import ListViewType

    return or_absent(f"listing the versions of model {model_name}",
                     lambda: list(ml.models.list(name=model_name, list_view_type=ListViewType.ALL)), [])


def delete_endpoint(ml: Any, name: str, *, timeout: float) -> None:
    or_absent(f"deleting online endpoint {name}",
              lambda: finish(ml.online_endpoints.begin_delete(name=name), f"endpoint {name} to be deleted", timeout=timeout), None)


def delete_deployment(ml: Any, endpoint_name: str, name: str, *, timeout: float) -> None:
    or_absent(f"deleting deployment {name}",
              lambda: finish(ml.online_deployments.begin_delete(name=name, endpoint_name=endpoint_name),
                             f"deployment {name} to be deleted", timeout=timeout), None)


def delete_model_version(ml: Any, model_name: str, version: str, *, resource_group: str, workspace: str) -> None:
    """Workspace model versions have no delete in azure-ai-ml's public API (only archive): the
    SDK's generated REST client has the service's DELETE."""
    with azure_errors(f"deleting model {model_name} version {version}"):
        ml.models._model_versions_operation.delete(  # noqa: SLF001 - the REST operation behind the SDK
            resource_group_name=resource_group, workspace_name=workspace, name=model_name, version=version)
