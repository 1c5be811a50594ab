"""The workspace's container registry for the Azure emulator: the ARM resource
(Microsoft.ContainerRegistry/registries, whose `loginServer` is the real registry of
emulators/registry.py) and ACR's token service: `POST /oauth2/exchange` trades an Azure AD access
token (one the emulator's identity endpoint issued) for an ACR refresh token, and the registry's
realm `/oauth2/token` takes that refresh token as the password of the user
00000000-0000-0000-0000-000000000000. Anything else gets 401, as from ACR. Repositories need no
creating (ACR makes one at its first push).

Token grants are recorded as the RBAC actions ACR checks (registries/pull/read, push/write).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from cloudml.emulators.azure.arm import LOCATION, RESOURCE_GROUP, SUBSCRIPTION
from cloudml.emulators.registry import LocalRegistry

REGISTRY_NAME = "cloudmlwsacr"
REGISTRY_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY_NAME}"
REFRESH_USER = "00000000-0000-0000-0000-000000000000"
RBAC = "Microsoft.ContainerRegistry/registries"


class AcrRegistry:
    def __init__(self, state_dir: Path, *, aad_token_valid: Callable[[str], bool], record: Callable[[str, str], None]):
        self.aad_token_valid = aad_token_valid
        self.record = record  # (RBAC action, user agent)
        self._refresh_tokens: set[str] = set()
        self._lock = threading.Lock()
        self.registry = LocalRegistry(state_dir, service=None, check=self._check, routes={"/oauth2/exchange": self._exchange},
                                      on_grant=self._record_grant)

    def start(self) -> AcrRegistry:
        self.registry.try_start()
        return self

    def stop(self) -> None:
        self.registry.stop()

    def resource(self) -> dict:
        """GET of the registry's ARM resource."""
        return {"id": REGISTRY_ID, "name": REGISTRY_NAME, "type": RBAC, "location": LOCATION,
                "sku": {"name": "Basic", "tier": "Basic"}, "tags": {},
                "properties": {"loginServer": self.registry.host, "adminUserEnabled": False, "provisioningState": "Succeeded",
                               "anonymousPullEnabled": False, "publicNetworkAccess": "Enabled"}}

    def _exchange(self, fields: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        if fields.get("grant_type") != "access_token":
            return 400, {"errors": [{"code": "UNSUPPORTED_GRANT_TYPE", "message": "grant_type must be access_token"}]}
        if fields.get("service") != self.registry.service:
            return 400, {"errors": [{"code": "INVALID_SERVICE", "message": f"service must be {self.registry.service}"}]}
        if not self.aad_token_valid(fields.get("access_token", "")):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "The Azure AD access token is not valid or has expired."}]}
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens.add(refresh)
        return 200, {"refresh_token": refresh}

    def pull_credentials(self) -> tuple[str, str]:
        """Credentials for the emulator's own pulls (the endpoint's identity with AcrPull)."""
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens.add(refresh)
        return REFRESH_USER, refresh

    def _check(self, username: str | None, password: str | None) -> bool:
        with self._lock:
            return username == REFRESH_USER and password in self._refresh_tokens

    def _record_grant(self, access: list[dict], user_agent: str) -> None:
        for entry in access:
            actions = entry.get("actions", [])
            if "pull" in actions or "*" in actions:
                self.record(f"{RBAC}/pull/read", user_agent)
            if "push" in actions or "*" in actions:
                self.record(f"{RBAC}/push/write", user_agent)
