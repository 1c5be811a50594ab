"""The azure-ai-ml MLClient for one workspace (optionally in a custom cloud, such as the cloudml
emulator), and Azure errors turned into cloudml errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from cloudml.errors import CloudMLError, ConfigError, DeployFailed, DeploymentNotFound, ProviderUnavailable

ROLE_HINT = ("the caller needs the built-in 'AzureML Data Scientist' role on the workspace, or the custom role in "
             "deploy_templates/azure-custom-role.json")
CUSTOM_CLOUD = "CloudMLCustomCloud"


def cloud_metadata(resource_manager_url: str) -> dict[str, str]:
    base = resource_manager_url.rstrip("/") + "/"
    return {"azure_portal": base, "resource_manager": base, "active_directory": base, "aml_resource_id": base,
            "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": base}


def ml_client(*, subscription_id: str, resource_group: str, workspace: str, resource_manager_url: str | None = None, credential: Any = None,
              user_agent: str | None = None):
    """MLClient with DefaultAzureCredential; with `resource_manager_url`, against that ARM endpoint
    as a custom cloud (what azure-ai-ml supports for sovereign and private clouds)."""
    _forget_our_current_cloud()
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    credential = credential or DefaultAzureCredential()
    kwargs: dict[str, Any] = {"show_progress": False, "user_agent": user_agent} if user_agent else {"show_progress": False}
    if resource_manager_url:
        # The SDK keeps custom clouds in a process-wide table and refuses to redefine one, so
        # each ARM URL gets its own cloud name.
        import hashlib

        kwargs["cloud"] = f"{CUSTOM_CLOUD}{hashlib.sha256(resource_manager_url.encode()).hexdigest()[:8]}"
        kwargs["cloud_metadata"] = cloud_metadata(resource_manager_url)
    _quiet_sdk_loggers()
    try:
        return MLClient(credential, subscription_id, resource_group, workspace, **kwargs)
    except AttributeError as exc:  # "Cannot overwrite existing cloud": already registered with the same URL
        if "Cannot overwrite existing cloud" not in str(exc):
            raise
        kwargs.pop("cloud_metadata")
        return MLClient(credential, subscription_id, resource_group, workspace, **kwargs)
    finally:
        _forget_our_current_cloud()


def _forget_our_current_cloud() -> None:
    """MLClient records its cloud in the process environment (AZUREML_CURRENT_CLOUD), and
    azure.ai.ml reads it at import time: a child process that inherits one of cloudml's custom
    cloud names would fail to import the SDK (the name is defined only in the parent)."""
    import os

    if os.environ.get("AZUREML_CURRENT_CLOUD", "").startswith(CUSTOM_CLOUD):
        os.environ.pop("AZUREML_CURRENT_CLOUD")


def _quiet_sdk_loggers() -> None:
    """azure-ai-ml gives its operation loggers their own INFO stream handler ("Check: endpoint x
    exists", ...); cloudml reports progress itself."""
    import logging

    import azure.ai.ml.operations  # noqa: F401 - creates the loggers

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("azure.ai.ml"):
            logging.getLogger(name).setLevel(logging.WARNING)


def error_code(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    response: Any = getattr(exc, "response", None)  # None fails below like any body that is not JSON
    try:
        return str(response.json()["error"]["code"])
    except Exception:  # noqa: BLE001 - not an ARM error body
        return ""


def error_message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None)
    if message:
        return str(message)
    response: Any = getattr(exc, "response", None)  # None fails below like any body that is not JSON
    try:
        return str(response.json()["error"]["message"])
    except Exception:  # noqa: BLE001 - not an ARM error body
        return str(getattr(exc, "message", None) or exc).splitlines()[0]


def workspace_missing(exc: BaseException) -> bool:
    """A 404 about the subscription, resource group or workspace itself, not a resource in it."""
    if getattr(exc, "status_code", None) != 404:
        return False
    return error_code(exc) in ("ResourceGroupNotFound", "SubscriptionNotFound") or bool(
        re.search(r"/workspaces/[^/']+' under resource group", error_message(exc)))


def is_not_found(exc: BaseException) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    if workspace_missing(exc):
        return False
    return isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404


@contextlib.contextmanager
def azure_errors(doing: str, *, error: type[CloudMLError] = DeployFailed, passthrough: type[BaseException] | tuple = ()) -> Iterator[None]:
    """Translate azure-core / azure-identity / azure-ai-ml failures while `doing` something into
    errors that say what to do (`passthrough`: exception types the caller handles itself)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    try:
        yield
    except CloudMLError:
        raise
    except passthrough:
        raise
    except ClientAuthenticationError as exc:
        raise ConfigError(
            f"no usable Azure credential while {doing}: {str(exc).splitlines()[0]}",
            hint="run `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or use a managed identity); "
                 "offline, start `cloudml emulator azure` and export what it prints",
        ) from None
    except ServiceRequestError as exc:
        raise ProviderUnavailable(f"cannot reach Azure while {doing}: {exc}",
                                  hint="check the network and resource_manager_url (or whether the emulator still runs)") from None
    except HttpResponseError as exc:
        code, message, status = error_code(exc), error_message(exc), getattr(exc, "status_code", None)
        if status == 403 or code in ("AuthorizationFailed", "Forbidden"):
            raise DeployFailed(f"access denied while {doing}: {message}", hint=ROLE_HINT) from None
        if workspace_missing(exc):
            raise ConfigError(f"Azure could not find the workspace while {doing}: {message}",
                              hint="check subscription_id, resource_group and workspace (`az ml workspace list`)") from None
        if status == 404:
            raise DeploymentNotFound(f"Azure ML found nothing while {doing}: {message}") from None
        if code in ("QuotaExceeded", "InsufficientQuota", "OutOfQuota") or "quota" in message.lower():
            raise DeployFailed(f"Azure ML refused {doing}: {message}",
                               hint="request a quota increase for the VM family (Azure portal, Quotas), or use another instance_type") from None
        if status == 429:
            raise DeployFailed(f"Azure throttled {doing}: {message}", hint="wait a minute and run the command again; it resumes where it stopped") from None
        raise error(f"Azure ML refused {doing}: {code + ': ' if code else ''}{message}") from None
    except Exception as exc:
        from azure.ai.ml.exceptions import MlException

        if isinstance(exc, MlException):
            raise error(f"azure-ai-ml failed while {doing}: {exc.message}") from None
        raise
