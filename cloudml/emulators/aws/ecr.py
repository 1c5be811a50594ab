"""ECR for the AWS emulator: moto keeps the repositories (CreateRepository, DescribeRepositories,
tags, scan and encryption settings); this answers `GetAuthorizationToken` the way ECR does (a
base64 `AWS:<password>` good for 12 hours, and the registry's `proxyEndpoint`), and puts a real
registry (emulators/registry.py) behind those passwords, on which pushes are accepted only into
repositories that exist in moto, as ECR refuses pushes to a repository never created.

The registry's HTTP calls are recorded as the IAM actions ECR checks for them (ecr:PutImage,
ecr:InitiateLayerUpload, ...), from the pull/push access each token was asked for.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cloudml.emulators.faults import Faults
from cloudml.emulators.registry import LocalRegistry

TOKEN_SECONDS = 12 * 3600
USERNAME = "AWS"
# The IAM actions ECR authorises a docker client's pulls and pushes with.
PULL_ACTIONS = ("BatchGetImage", "GetDownloadUrlForLayer", "BatchCheckLayerAvailability")
PUSH_ACTIONS = ("BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage")


class EcrRegistry:
    def __init__(self, state_dir: Path, *, account: str, record: Callable[[str, str], None], faults: Faults | None = None):
        self.account = account
        self.record = record  # (IAM action, user agent)
        self.faults = faults or Faults()
        self._passwords: dict[str, float] = {}  # password -> expiry
        self._lock = threading.Lock()
        self.registry = LocalRegistry(state_dir, service="ecr.amazonaws.com", check=self._check, may_push=self._repository_exists,
                                      on_grant=self._record_grant)

    def start(self) -> EcrRegistry:
        self.registry.try_start()
        return self

    def stop(self) -> None:
        self.registry.stop()

    def authorization_token(self, region: str) -> dict | None:
        """The GetAuthorizationToken answer (None without a registry: moto's then)."""
        if not self.registry.running:
            return None
        password = secrets.token_urlsafe(32)
        expires = time.time() + TOKEN_SECONDS
        with self._lock:
            now = time.time()
            self._passwords = {p: t for p, t in self._passwords.items() if t > now}
            self._passwords[password] = expires
        return {"authorizationData": [{
            "authorizationToken": base64.b64encode(f"{USERNAME}:{password}".encode()).decode(),
            "expiresAt": expires,
            "proxyEndpoint": f"http://{self.registry.host}",
        }]}

    def pull_credentials(self) -> tuple[str, str]:
        """Credentials for the emulator's own pulls (SageMaker pulls with the account's ECR access)."""
        password = secrets.token_urlsafe(32)
        with self._lock:
            self._passwords[password] = time.time() + TOKEN_SECONDS
        return USERNAME, password

    def expire_tokens(self) -> None:
        """Every authorization token issued so far stops working (as they do after 12 hours)."""
        with self._lock:
            self._passwords.clear()

    def _check(self, username: str | None, password: str | None) -> bool:
        with self._lock:
            return username == USERNAME and self._passwords.get(password or "", 0) > time.time()

    def _repository_exists(self, name: str) -> bool:
        """Whether a push there is allowed: the repository exists and no `InitiateLayerUpload`
        fault is scheduled (a test's stand-in for a repository policy that denies the push)."""
        from moto.ecr.models import ecr_backends

        if self.faults.take("InitiateLayerUpload"):
            return False
        return any(name in backend.repositories for backend in ecr_backends[self.account].values())

    def _record_grant(self, access: list[dict], user_agent: str) -> None:
        for entry in access:
            actions = entry.get("actions", [])
            names = (PUSH_ACTIONS if "push" in actions or "*" in actions else ()) + (PULL_ACTIONS if "pull" in actions or "*" in actions else ())
            for action in dict.fromkeys(names):
                self.record(f"ecr:{action}", user_agent)
