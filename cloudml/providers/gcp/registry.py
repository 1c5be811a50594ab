"""The Artifact Registry repository cloudml's runtime images live in, and the credentials to push
to it.

The repositories API is called over REST with the session's credentials (google-auth's
AuthorizedSession; google-cloud-aiplatform brings it, no Artifact Registry client library needed).
Images are `<location>-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`; the registry takes basic
`oauth2accesstoken:<ADC access token>`. The options `artifact_registry_endpoint` and
`registry_host` (CLOUDML_GCP_*) point both at an emulator.
"""

from __future__ import annotations

from cloudml.errors import ConfigError
from cloudml.images.registry import Credentials, RegistryTarget
from cloudml.providers.gcp.session import LOGIN_HINT, GcpSession, gcp_errors

REPOSITORY = "cloudml"
IMAGE = "runtime"
API = "https://artifactregistry.googleapis.com"
TOKEN_USER = "oauth2accesstoken"
OWNER_LABELS = {"cloudml-owned": "true"}


def registry_host(session: GcpSession) -> str:
    return session.options.registry_host or f"{session.location}-docker.pkg.dev"


def _api(session: GcpSession) -> str:
    return (session.options.artifact_registry_endpoint or API).rstrip("/")


def _raise_for(response) -> None:
    from google.api_core import exceptions

    if response.status_code >= 400:
        raise exceptions.from_http_response(response)


def ensure_repository(session: GcpSession, name: str = REPOSITORY) -> bool:
    """Create the DOCKER repository in the session's location unless it exists; True when this call created it."""
    parent = f"projects/{session.project}/locations/{session.location}"
    url = f"{_api(session)}/v1/{parent}/repositories"
    with gcp_errors(f"looking up the Artifact Registry repository {name} (artifactregistry.repositories.get)"):
        found = session.http.get(f"{url}/{name}", timeout=60)
        if found.status_code == 200:
            return False
        if found.status_code != 404:
            _raise_for(found)
    body = {"format": "DOCKER", "description": "cloudml runtime images", "labels": OWNER_LABELS}
    with gcp_errors(f"creating the Artifact Registry repository {name} (artifactregistry.repositories.create)"):
        created = session.http.post(url, params={"repositoryId": name}, json=body, timeout=60)
        if created.status_code == 409:  # another deploy made it meanwhile
            return False
        _raise_for(created)
        operation = created.json()
    if not operation.get("done"):
        _wait(session, operation["name"])
    elif "error" in operation:
        from cloudml.errors import DeployFailed

        raise DeployFailed(f"Artifact Registry could not create the repository {name}: {operation['error'].get('message', operation['error'])}")
    return True


def _wait(session: GcpSession, operation: str) -> None:
    import time

    from cloudml.errors import DeployFailed

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with gcp_errors(f"waiting for {operation}"):
            answer = session.http.get(f"{_api(session)}/v1/{operation}", timeout=60)
            _raise_for(answer)
        state = answer.json()
        if state.get("done"):
            if "error" in state:
                raise DeployFailed(f"Artifact Registry failed {operation}: {state['error'].get('message', state['error'])}")
            return
        time.sleep(min(session.options.poll_interval, 2.0))
    raise DeployFailed(f"Artifact Registry did not finish {operation} within 300s", hint="run the command again: it resumes")


def registry_credentials(session: GcpSession) -> tuple[str, Credentials]:
    """(registry host, credentials): the session's ADC access token, refreshed now; anonymous
    credentials (the emulator) give anonymous registry access."""
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import Request

    credentials = session.credentials
    if isinstance(credentials, AnonymousCredentials):
        return registry_host(session), Credentials()
    with gcp_errors("getting an access token for Artifact Registry (Application Default Credentials)", error=ConfigError):
        credentials.refresh(Request())
    if not credentials.token:
        raise ConfigError("the Google Cloud credentials gave no access token for Artifact Registry", hint=LOGIN_HINT)
    return registry_host(session), Credentials(TOKEN_USER, credentials.token)


def target(session: GcpSession, repository: str = REPOSITORY, image: str = IMAGE) -> RegistryTarget:
    """The repository made sure of, and what pushes `PROJECT/REPOSITORY/IMAGE` to it."""
    ensure_repository(session, repository)
    host, credentials = registry_credentials(session)
    loopback = host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost")
    return RegistryTarget(host, f"{session.project}/{repository}/{image}", credentials, loopback)
