"""Registry logins the way podman, skopeo and docker keep them, for pushing to a plain registry.

`CLOUDML_REGISTRY_USERNAME` / `CLOUDML_REGISTRY_PASSWORD` name the login for the registry pushed
to. Otherwise the first auth file with an entry for the host gives it, in the containers tools'
order: `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json` (`podman login`),
`${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`, then `${DOCKER_CONFIG:-~/.docker}/config.json`
(`docker login`). An entry's "auth" is base64 `user:password`. Credential helpers (credsStore,
credHelpers) run programs this module does not run: their logins need the variables instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from cloudml.errors import ConfigError
from cloudml.images.registry import DOCKER_HUB, Credentials

USERNAME_VAR = "CLOUDML_REGISTRY_USERNAME"
PASSWORD_VAR = "CLOUDML_REGISTRY_PASSWORD"
# The names docker login has used for Docker Hub.
_HUB_ALIASES = {DOCKER_HUB, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def auth_files(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The auth files looked in, first first (whether they exist or not)."""
    home = Path(environ.get("HOME") or Path.home())
    files = [Path(environ["REGISTRY_AUTH_FILE"])] if environ.get("REGISTRY_AUTH_FILE") else []
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    files.append(Path(environ.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return files


def _host(key: str) -> str:
    """An auths key ('https://index.docker.io/v1/', 'quay.io', 'localhost:5000/ns') as a registry host."""
    host = urlsplit(key if "://" in key else f"//{key}").netloc.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _from_entry(entry: object, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object", hint='an entry is {"auth": "<base64 user:password>"}')
    if entry.get("auth"):
        try:
            username, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise ConfigError(f"{where}: its auth is not base64 'user:password'", hint="log in again (podman login / docker login)")
        return Credentials(username, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password") or ""))
    return None  # identitytoken only: an OAuth2 refresh token for a flow this client does not speak


def registry_credentials(host: str, *, environ: Mapping[str, str] = os.environ, variables: bool = True) -> Credentials | None:
    """The login for registry `host` (host[:port]), None when there is none (an anonymous push).
    `variables`: whether CLOUDML_REGISTRY_USERNAME/PASSWORD apply (they name the pushed-to registry's)."""
    if variables and (environ.get(USERNAME_VAR) or environ.get(PASSWORD_VAR)):
        if not (environ.get(USERNAME_VAR) and environ.get(PASSWORD_VAR)):
            raise ConfigError(f"{USERNAME_VAR} and {PASSWORD_VAR} go together: only one is set",
                              hint="set both (the password may be a token), or neither to use the auth files of podman/docker login")
        return Credentials(environ[USERNAME_VAR], environ[PASSWORD_VAR])
    wanted = _host(host)
    for path in auth_files(environ):
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the registry auth file {path}: {exc}",
                              hint="fix or remove it, or log in again (podman login / docker login)") from None
        auths = doc.get("auths") if isinstance(doc, dict) else None
        for key, entry in (auths or {}).items() if isinstance(auths, dict) else ():
            if _host(key) == wanted:
                found = _from_entry(entry, f"{path}: auths[{key!r}]")
                if found is not None:
                    return found
    return None
