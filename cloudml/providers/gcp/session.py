"""Credentials, project and the Vertex AI / GCS / Cloud Logging clients for one project and
region, and Google API errors turned into cloudml errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from cloudml.errors import CloudMLError, ConfigError, DeployFailed, ProviderUnavailable
from cloudml.providers.gcp.options import GcpOptions

ROLES_HINT = "cloudml needs roles/aiplatform.user and roles/storage.objectAdmin on the staging bucket (see deploy_templates/gcp-roles.md)"
LOGIN_HINT = "run `gcloud auth application-default login`, or pass -o credentials=/path/to/key.json (or start `cloudml emulator gcp` for offline use)"


class GcpSession:
    def __init__(self, options: GcpOptions):
        self.options = options
        self.credentials, detected_project = self._load_credentials()
        project = options.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or detected_project
        if not project:
            raise ConfigError(
                "no Google Cloud project configured",
                hint="pass -o project=my-project, set gcp: {project: ...} in cloudml.yaml, or export CLOUDML_GCP_PROJECT / GOOGLE_CLOUD_PROJECT",
            )
        self.project = project
        self.location = options.location

    def _load_credentials(self):
        import google.auth
        from google.auth import exceptions as auth_errors

        choice = self.options.credentials
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        if choice == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials(), None
        if choice:
            path = os.path.expanduser(choice)
            if not os.path.isfile(path):
                raise ConfigError(f"credentials file {choice} does not exist",
                                  hint="pass the path of a service-account key or ADC JSON file, or drop the option to use ADC")
            try:
                return google.auth.load_credentials_from_file(path, scopes=scopes)
            except (auth_errors.DefaultCredentialsError, ValueError) as exc:
                raise ConfigError(f"cannot use credentials file {choice}: {exc}",
                                  hint="download a fresh key, or use `gcloud auth application-default login`") from None
        try:
            return google.auth.default(scopes=scopes)
        except auth_errors.DefaultCredentialsError:
            raise ConfigError("no Google Cloud credentials found (Application Default Credentials)", hint=LOGIN_HINT) from None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _client_options(self):
        from google.api_core.client_options import ClientOptions

        endpoint = self.options.api_endpoint or f"{self.location}-aiplatform.googleapis.com"
        return ClientOptions(api_endpoint=endpoint)

    def _transport(self) -> str | None:
        # A URL with a scheme (an emulator, a proxy) is reachable over REST only; otherwise the SDK's default.
        return "rest" if self.options.api_endpoint and "://" in self.options.api_endpoint else None

    def _gapic(self, cls):
        kwargs = {"credentials": self.credentials, "client_options": self._client_options()}
        if self._transport():
            kwargs["transport"] = self._transport()
        return cls(**kwargs)

    @cached_property
    def endpoints(self):
        from google.cloud import aiplatform_v1

        return self._gapic(aiplatform_v1.EndpointServiceClient)

    @cached_property
    def models(self):
        from google.cloud import aiplatform_v1

        return self._gapic(aiplatform_v1.ModelServiceClient)

    @cached_property
    def predictions(self):
        from google.cloud import aiplatform_v1

        return self._gapic(aiplatform_v1.PredictionServiceClient)

    @cached_property
    def storage(self):
        from google.cloud import storage  # type: ignore[attr-defined]  # google-cloud-storage ships no py.typed

        return storage.Client(project=self.project, credentials=self.credentials)

    @cached_property
    def http(self):
        """An authorised HTTP session (Cloud Logging's REST API)."""
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials)

    @property
    def logging_url(self) -> str:
        return (self.options.logging_endpoint or "https://logging.googleapis.com").rstrip("/")

    def endpoint_url(self, endpoint_id: str) -> str:
        base = self.options.api_endpoint or f"https://{self.location}-aiplatform.googleapis.com"
        if "://" not in base:
            base = f"https://{base}"
        return f"{base.rstrip('/')}/v1/{self.parent}/endpoints/{endpoint_id}:predict"


# Over REST, google-api-core puts the request line before the server's text
# ("POST https://...:predict?%24alt=json%3Benum-encoding%3Dint: <message>"): users get the text.
_REQUEST_LINE = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


def error_message(exc: BaseException) -> str:
    """The server's error text of a Google API error, without the request URL."""
    return _REQUEST_LINE.sub("", getattr(exc, "message", None) or str(exc), count=1)


def error_status(exc: BaseException) -> str:
    """The canonical status name (FAILED_PRECONDITION, ...) of a Google API error, on either transport."""
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return grpc_code.name
    response: Any = getattr(exc, "response", None)  # None fails below like any body that is not JSON
    try:
        return response.json()["error"]["status"]
    except Exception:  # noqa: BLE001 - no JSON body: no status
        return ""


@contextlib.contextmanager
def gcp_errors(doing: str, *, error: type[CloudMLError] = DeployFailed, passthrough: type[BaseException] | tuple = ()) -> Iterator[None]:
    """Translate google-api-core / google-auth failures while `doing` something into errors that
    say what to do (`passthrough`: exception types the caller handles itself)."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_errors

    try:
        yield
    except CloudMLError:
        raise
    except passthrough:
        raise
    # Over REST, errors come as the HTTP classes (Forbidden, TooManyRequests, ...); over gRPC as
    # their canonical subclasses (PermissionDenied, ResourceExhausted, ...): catch the HTTP ones.
    except (auth_errors.RefreshError, auth_errors.DefaultCredentialsError, api.Unauthorized) as exc:
        raise ConfigError(f"Google Cloud refused the credentials while {doing}: {error_message(exc)}", hint=LOGIN_HINT) from None
    except api.Forbidden as exc:
        text = error_message(exc)
        if "SERVICE_DISABLED" in text or "has not been used" in text or "is disabled" in text:
            raise DeployFailed(f"the Vertex AI API is not enabled while {doing}: {text}",
                               hint="run `gcloud services enable aiplatform.googleapis.com storage.googleapis.com`") from None
        raise DeployFailed(f"permission denied while {doing}: {text}", hint=ROLES_HINT) from None
    except api.TooManyRequests as exc:
        raise DeployFailed(f"Vertex AI refused {doing}: {error_message(exc)}",
                           hint="request a quota increase (IAM & Admin > Quotas) or use a smaller machine type / fewer replicas; "
                                "the run can be repeated") from None
    except (api.ServiceUnavailable, requests.exceptions.ConnectionError) as exc:
        raise ProviderUnavailable(f"cannot reach Google Cloud while {doing}: {error_message(exc)}",
                                  hint="check the network, the location and api_endpoint") from None
    except api.GoogleAPICallError as exc:
        code = error_status(exc) or getattr(exc.code, "name", None) or f"HTTP {exc.code}"
        raise error(f"Google Cloud refused {doing}: {code}: {error_message(exc)}") from None
    except auth_errors.GoogleAuthError as exc:
        raise ConfigError(f"Google Cloud authentication failed while {doing}: {exc}", hint=LOGIN_HINT) from None
