"""Errors users see, each with an exit code the CLI returns.

Every error carries a `hint`: what to do about it. The CLI prints both.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2  # bad flags, config, spec or request
    MODEL = 3  # the model cannot be packaged or loaded
    NOT_FOUND = 4  # no such deployment
    DEPLOY_FAILED = 5  # deploy/update failed; the previous version keeps serving
    PREDICTION_REJECTED = 6  # the endpoint refused the request (4xx)
    PROVIDER_UNAVAILABLE = 7  # missing extra or unknown provider
    NOT_HEALTHY = 8  # status: the deployment exists but is not serving
    INTERRUPTED = 130  # Ctrl-C (SIGINT)


class CloudMLError(Exception):
    exit_code = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra text worth showing (for example a server log tail).
        self.details = details

    def to_dict(self) -> dict:
        out = {"error": type(self).__name__, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class ConfigError(CloudMLError):
    exit_code = ExitCode.BAD_INPUT


class UsageError(ConfigError):
    """The command line itself is wrong: an unknown flag or command, a missing argument, a bad value."""


class ModelError(CloudMLError):
    exit_code = ExitCode.MODEL


class UnsafeArchiveError(ModelError):
    pass


class DeploymentNotFound(CloudMLError):
    exit_code = ExitCode.NOT_FOUND


class DeployFailed(CloudMLError):
    exit_code = ExitCode.DEPLOY_FAILED


class PredictionRejected(CloudMLError):
    exit_code = ExitCode.PREDICTION_REJECTED

    def __init__(self, message: str, *, status_code: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.status_code = status_code


class EndpointUnavailable(CloudMLError):
    exit_code = ExitCode.NOT_HEALTHY


class ProviderUnavailable(CloudMLError):
    exit_code = ExitCode.PROVIDER_UNAVAILABLE


class Interrupted(CloudMLError):
    exit_code = ExitCode.INTERRUPTED


class ReportedError(CloudMLError):
    """An error another process reported as `to_dict()` (a server's error file), shown as it was."""

    def __init__(self, info: dict):
        super().__init__(str(info.get("message") or "failed"), hint=info.get("hint"), details=info.get("details"))
        self.kind = str(info.get("error") or "CloudMLError")
        self.exit_code = int(info.get("exit_code") or ExitCode.UNEXPECTED)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "error": self.kind}
