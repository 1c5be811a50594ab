"""The provider-agnostic interface every backend implements.

Modelled on MLflow's deployment client (create/update/delete/list/get/predict), but with typed
specs and options and keyword-only parameters.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from cloudml.errors import ConfigError, DeploymentNotFound
from cloudml.progress import SILENT, Progress
from cloudml.results import Deployment, DeployResult, Prediction
from cloudml.spec import DeploymentSpec, format_validation_error


class ProviderOptions(BaseModel):
    """Base for each provider's typed options (region, project, home folder, ...)."""

    model_config = ConfigDict(extra="forbid")


class Deployer(ABC):
    """Deploys models to one provider and manages what it deployed.

    Construct it through `cloudml.get_deployer(name, **options)`; `options` are validated
    against the provider's `Options` model.
    """

    provider: ClassVar[str]
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(self, *, progress: Progress | None = None, **options: Any):
        options = {**self._environment_options(), **options}
        try:
            self.options = self.Options.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid options for provider {self.provider!r}:\n{format_validation_error(exc)}",
                hint=f"see `cloudml providers` and the README for what {self.provider!r} accepts",
            ) from None
        self.progress = progress or SILENT

    @classmethod
    def _environment_options(cls) -> dict[str, str]:
        """`CLOUDML_<PROVIDER>_<OPTION>` variables, under options passed in code (as on the CLI)."""
        prefix = f"CLOUDML_{cls.provider.upper()}_"
        return {
            field: os.environ[prefix + field.upper()]
            for field in cls.Options.model_fields
            if os.environ.get(prefix + field.upper())
        }

    @abstractmethod
    def deploy(self, spec: DeploymentSpec) -> DeployResult:
        """Create the deployment, or converge an existing one of that name to `spec`.

        The same model twice is a no-op; a new model replaces the old one without downtime,
        and if the new one fails the old one keeps serving.
        """

    def update(self, spec: DeploymentSpec) -> DeployResult:
        """Like `deploy`, but refuses to create: the deployment must exist."""
        self.get(spec.name)
        return self.deploy(spec)

    @abstractmethod
    def get(self, name: str) -> Deployment:
        """Current state; raises `DeploymentNotFound`."""

    def status(self, name: str) -> Deployment:
        return self.get(name)

    @abstractmethod
    def list(self) -> list[Deployment]:
        """Deployments this provider created through cloudml (and nothing else)."""

    @abstractmethod
    def predict(self, name: str, *, instances: list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
        """Send `{"instances": [...]}`; the same format on every provider."""

    @abstractmethod
    def logs(self, name: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        """The serving logs, last `tail` lines first; with `follow`, keep yielding new lines."""

    @abstractmethod
    def delete(self, name: str, *, purge: bool = False) -> bool:
        """Remove the deployment and everything cloudml created for it.

        Stored model artifacts (an S3 object, a GCS folder) are kept for a later redeploy unless
        `purge` is true. Idempotent: returns False when there was nothing to delete.
        """

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except DeploymentNotFound:
            return False
        return True
