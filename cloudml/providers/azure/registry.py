"""The Azure ML workspace's container registry (ACR), where cloudml's runtime images live, and the
credentials to push to it.

The workspace names its registry (`container_registry`, an ARM id); the registry's ARM resource
gives its login server. ACR authenticates with an ACR refresh token that the caller's Azure AD
token is exchanged for (`POST https://<login server>/oauth2/exchange`, what `az acr login` does);
the registry's token service takes it as the password of user 00000000-0000-0000-0000-000000000000.
The exchange endpoint sits beside the token realm the registry's challenge names, which is the
login server itself on Azure and a local address on the cloudml emulator. Repositories need no
creating: ACR makes one at the first push.
"""

from __future__ import annotations

import re
from typing import Any

from cloudml import __version__
from cloudml.errors import ConfigError, DeployFailed, ProviderUnavailable
from cloudml.images.registry import Credentials, RegistryTarget
from cloudml.providers.azure.session import ROLE_HINT, azure_errors

REPOSITORY = "cloudml/runtime"
REFRESH_USER = "00000000-0000-0000-0000-000000000000"
ARM = "https://management.azure.com"
API_VERSION = "2023-07-01"
USER_AGENT = f"cloudml/{__version__}"
PUSH_HINT = ("the caller needs the AcrPush role on the workspace's container registry "
             "(Microsoft.ContainerRegistry/registries/push/write, pull/read; see deploy_templates/azure-custom-role.json)")


def _credential(credential: Any) -> Any:
    if credential is not None:
        return credential
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _arm_token(credential: Any, resource_manager_url: str | None) -> str:
    base = (resource_manager_url or ARM).rstrip("/")
    with azure_errors("getting an Azure AD token for the container registry", error=ConfigError):
        return credential.get_token(f"{base}/.default").token


def login_server(ml: Any, workspace: str, *, resource_manager_url: str | None = None, credential: Any = None) -> str:
    """The login server of the workspace's container registry (host[:port])."""
    import requests

    with azure_errors(f"reading workspace {workspace}"):
        registry_id = ml.workspaces.get(workspace).container_registry
    if not registry_id:
        raise ConfigError(f"workspace {workspace} has no container registry for cloudml's runtime image",
                          hint="attach one: `az ml workspace update -n WORKSPACE -g GROUP --container-registry ACR_ID`, "
                               "or pass -o image_uri=... to use an image you pushed yourself")
    credential = _credential(credential)
    url = f"{(resource_manager_url or ARM).rstrip('/')}{registry_id}?api-version={API_VERSION}"
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {_arm_token(credential, resource_manager_url)}",
                                              "User-Agent": USER_AGENT}, timeout=60)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"cannot reach Azure reading the container registry {registry_id}: {exc}",
                                  hint="check the network and resource_manager_url") from None
    if response.status_code in (401, 403):
        raise DeployFailed(f"access denied reading the container registry {registry_id}: {_arm_message(response)}",
                           hint="the caller needs Microsoft.ContainerRegistry/registries/read on it; " + ROLE_HINT)
    if response.status_code == 404:
        raise ConfigError(f"the workspace's container registry {registry_id} does not exist: {_arm_message(response)}",
                          hint="attach an existing registry to the workspace, or pass -o image_uri=...")
    if response.status_code != 200:
        raise DeployFailed(f"Azure refused reading the container registry {registry_id}: HTTP {response.status_code}: {_arm_message(response)}")
    server = (response.json().get("properties") or {}).get("loginServer")
    if not server:
        raise DeployFailed(f"the container registry {registry_id} has no login server yet", hint="wait until it is provisioned, then run again")
    return server


def ensure_repository(ml: Any, workspace: str, *, resource_manager_url: str | None = None, credential: Any = None) -> bool:
    """ACR creates repositories at their first push: this only checks the registry is there.
    Always False (it creates nothing)."""
    login_server(ml, workspace, resource_manager_url=resource_manager_url, credential=credential)
    return False


def registry_credentials(ml: Any, workspace: str, *, resource_manager_url: str | None = None, credential: Any = None) -> tuple[str, Credentials]:
    """(login server, credentials): the Azure AD token exchanged for an ACR refresh token."""
    credential = _credential(credential)
    host = login_server(ml, workspace, resource_manager_url=resource_manager_url, credential=credential)
    return host, Credentials(REFRESH_USER, exchange(host, _arm_token(credential, resource_manager_url)))


def exchange(host: str, aad_token: str) -> str:
    """An ACR refresh token for an Azure AD access token, at the registry's /oauth2/exchange."""
    import requests

    scheme = "http" if _is_loopback(host) else "https"
    try:
        challenge = requests.get(f"{scheme}://{host}/v2/", timeout=60).headers.get("WWW-Authenticate", "")
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm, service = params.get("realm") or f"https://{host}/oauth2/token", params.get("service") or host
        url = re.sub(r"/oauth2/token$", "/oauth2/exchange", realm)
        response = requests.post(url, data={"grant_type": "access_token", "service": service, "access_token": aad_token},
                                 headers={"User-Agent": USER_AGENT}, timeout=60)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"cannot reach the container registry {host}: {exc}",
                                  hint="check the network (and the registry's network rules)") from None
    if response.status_code == 401:
        raise ConfigError(f"the container registry {host} refused the Azure AD token (401 at /oauth2/exchange): {_acr_message(response)}",
                          hint="run `az login` again (the token may have expired), or check AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET")
    if response.status_code == 403:
        raise DeployFailed(f"the container registry {host} denied the token exchange: {_acr_message(response)}", hint=PUSH_HINT)
    token = response.json().get("refresh_token") if response.status_code == 200 else None
    if not token:
        raise DeployFailed(f"the container registry {host} answered the token exchange with HTTP {response.status_code}: {_acr_message(response)}")
    return str(token)


def target(ml: Any, workspace: str, repository: str = REPOSITORY, *, resource_manager_url: str | None = None,
           credential: Any = None) -> RegistryTarget:
    host, credentials = registry_credentials(ml, workspace, resource_manager_url=resource_manager_url, credential=credential)
    return RegistryTarget(host, repository, credentials, _is_loopback(host))


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


def _arm_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:  # noqa: BLE001 - not an ARM error body
        return response.text[:200]


def _acr_message(response: Any) -> str:
    try:
        return str(response.json()["errors"][0]["message"])
    except Exception:  # noqa: BLE001 - not a registry error body
        return response.text[:200]
