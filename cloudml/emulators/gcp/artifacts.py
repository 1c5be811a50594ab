"""Artifact Registry for the GCP emulator: the repositories API (`projects.locations.repositories`
create and get, v1 REST, as the official clients and `gcloud artifacts` call it) and a real
registry (emulators/registry.py) standing in for `LOCATION-docker.pkg.dev`: images are
`<registry>/PROJECT/REPOSITORY/IMAGE`, and pushes go only into DOCKER repositories that exist.

Registry auth is Artifact Registry's: basic `oauth2accesstoken:<access token>` at the token
realm, where the token must be one this emulator's OAuth endpoint issued: `POST /token`, the
token_uri of the service-account key file it writes (the JWT-bearer grant google-auth makes with
it, signature checked against the account's key). An anonymous client is let in, as the emulator's Vertex API lets in
anonymous credentials; a wrong token gets 401.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloudml.emulators.gcp.vertex import ApiError
from cloudml.emulators.registry import LocalRegistry

REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
FORMATS = {"DOCKER", "MAVEN", "NPM", "APT", "YUM", "PYTHON", "GO", "KFP", "GENERIC"}
TOKEN_SECONDS = 3600
TOKEN_USER = "oauth2accesstoken"
REPOSITORY_FIELDS = {"name", "format", "description", "labels", "kmsKeyName", "mode", "dockerConfig", "cleanupPolicyDryRun"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ArtifactRegistry:
    def __init__(self, state_dir: Path, *, record: Callable[[str, str], None]):
        self.record = record  # (IAM permission, user agent)
        self.repositories: dict[str, dict] = {}  # projects/P/locations/L/repositories/R -> resource
        self.lock = threading.Lock()
        self._access_tokens: dict[str, float] = {}
        self._account_key: Any = None
        self.state_dir = Path(state_dir)
        self.registry = LocalRegistry(self.state_dir / "registry", service="artifactregistry.googleapis.com", check=self._check,
                                      may_push=self._may_push, on_grant=self._record_grant)

    def start(self) -> ArtifactRegistry:
        self.registry.try_start()
        return self

    def stop(self) -> None:
        self.registry.stop()

    def write_key_file(self, token_uri: str, project: str) -> Path:
        """A service-account key file whose token_uri is this emulator: google-auth turns it into
        access tokens the emulated registry accepts."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self._account_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path = self.state_dir / "service-account.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "type": "service_account", "project_id": project, "private_key_id": secrets.token_hex(20), "private_key": pem.decode(),
            "client_email": f"cloudml-deployer@{project}.iam.gserviceaccount.com", "client_id": str(secrets.randbits(64)),
            "token_uri": token_uri,
        }))
        return path

    # -- OAuth ------------------------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        """The OAuth 2.0 token endpoint: the JWT-bearer grant of a service account."""
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not self._assertion_valid(form.get("assertion", "")):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        access = "ya29.emulator-" + secrets.token_urlsafe(24)
        with self.lock:
            now = time.time()
            self._access_tokens = {t: e for t, e in self._access_tokens.items() if e > now}
            self._access_tokens[access] = now + TOKEN_SECONDS
        return 200, {"access_token": access, "expires_in": TOKEN_SECONDS, "token_type": "Bearer"}

    def _assertion_valid(self, assertion: str) -> bool:
        import base64

        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def unb64(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            header, claims, signature = assertion.split(".")
            self._account_key.public_key().verify(unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
            return float(json.loads(unb64(claims))["exp"]) > time.time()
        except (ValueError, KeyError, TypeError, InvalidSignature, AttributeError):
            return False

    def pull_credentials(self) -> tuple[str, str]:
        """Credentials for the emulator's own pulls (Vertex AI's service agent reads the registry)."""
        access = "ya29.emulator-" + secrets.token_urlsafe(24)
        with self.lock:
            self._access_tokens[access] = time.time() + TOKEN_SECONDS
        return TOKEN_USER, access

    def _check(self, username: str | None, password: str | None) -> bool:
        if username is None:
            return True  # anonymous, like the rest of the emulator
        with self.lock:
            return username == TOKEN_USER and self._access_tokens.get(password or "", 0) > time.time()

    # -- repositories API -------------------------------------------------------------------------

    def create(self, parent: str, repository_id: str, body: Any) -> dict:
        if not REPOSITORY_ID.match(repository_id or ""):
            raise ApiError("INVALID_ARGUMENT", f"Invalid repository id {repository_id!r}: lowercase letters, digits and hyphens, "
                                               "starting with a letter, at most 63 characters.")
        if not isinstance(body, dict) or set(body) - REPOSITORY_FIELDS:
            raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. Unknown name {sorted(set(body or {}) - REPOSITORY_FIELDS)[:1]}.")
        if body.get("format") not in FORMATS:
            raise ApiError("INVALID_ARGUMENT", f"Repository format must be one of {sorted(FORMATS)}.")
        name = f"{parent}/repositories/{repository_id}"
        with self.lock:
            if name in self.repositories:
                raise ApiError("ALREADY_EXISTS", f"the repository already exists: {name}")
            resource = {**{k: v for k, v in body.items() if k != "name"}, "name": name, "createTime": _now(), "updateTime": _now(),
                        "mode": body.get("mode", "STANDARD_REPOSITORY"), "sizeBytes": "0"}
            self.repositories[name] = resource
        # Creating one is quick: the operation is done at once.
        return {"name": f"{parent}/operations/{uuid.uuid4()}", "done": True,
                "response": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.Repository", **resource}}

    def get(self, name: str) -> dict:
        with self.lock:
            found = self.repositories.get(name)
        if found is None:
            raise ApiError("NOT_FOUND", f"Requested entity was not found. (repository {name})")
        return dict(found)

    def _may_push(self, image: str) -> bool:
        project, _, rest = image.partition("/")
        repository = rest.partition("/")[0]
        with self.lock:
            return any(name.startswith(f"projects/{project}/locations/") and name.endswith(f"/repositories/{repository}")
                       and r.get("format") == "DOCKER" for name, r in self.repositories.items())

    def _record_grant(self, access: list[dict], user_agent: str) -> None:
        for entry in access:
            actions = entry.get("actions", [])
            if "pull" in actions or "*" in actions:
                self.record("artifactregistry.repositories.downloadArtifacts", user_agent)
            if "push" in actions or "*" in actions:
                self.record("artifactregistry.repositories.uploadArtifacts", user_agent)
