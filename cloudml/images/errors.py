"""What goes wrong talking to a container registry, as cloudml errors (message + hint + exit code)."""

from __future__ import annotations

from cloudml.errors import CloudMLError, ExitCode


class RegistryError(CloudMLError):
    """The registry answered with an error (or something that is not the distribution API)."""

    exit_code = ExitCode.DEPLOY_FAILED

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.status = status
        self.code = code  # the distribution API's error code, e.g. "MANIFEST_UNKNOWN"


class RegistryUnreachable(RegistryError):
    """Nothing answered at the registry's address (DNS, refused connection, TLS failure, timeout)."""


class RegistryAuthError(RegistryError):
    """The registry wants credentials it was not given, or refused the ones it was given."""


class ImageNotFound(RegistryError):
    """No such repository, tag, manifest or blob: usually a wrong image name, so bad input."""

    exit_code = ExitCode.BAD_INPUT
