"""The provider-agnostic interface every backend implements.

Modelled on MLflow's deployment client (create/update/delete/list/get/predict), but with typed
specs and options and keyword-only parameters.
"""

from __future__ import annotations

import builtins
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from cloudml.errors import ConfigError, DeploymentNotFound
from cloudml.progress import SILENT, Progress
from cloudml.providers.options import ProviderOptions, environment_layer, keyword_layer, resolve_options
from cloudml.results import Deployment, DeployResult, Prediction
from cloudml.spec import DeploymentSpec

__all__ = ["Deployer", "ProviderOptions", "cloudml_home"]


def cloudml_home() -> Path:
    """Where cloudml keeps what it makes on this machine (local state, packages being built): $CLOUDML_HOME, default ~/.cloudml."""
    return Path(os.environ.get("CLOUDML_HOME") or Path.home() / ".cloudml").expanduser()


class Deployer(ABC):
    """Deploys models to one provider and manages what it deployed.

    Construct it through `cloudml.get_deployer(name, **options)`: keyword `options` win over
    `CLOUDML_<PROVIDER>_<OPTION>` variables, and both are checked against the provider's `Options`
    model by the rules of `cloudml.providers.options` (the CLI's too). `options=` takes an
    already-resolved `Options` object instead (what `cloudml.config` builds); the environment is
    then not read again.
    """

    provider: ClassVar[str]
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(self, *, options: ProviderOptions | None = None, progress: Progress | None = None, **values: Any):
        if options is None:
            options = resolve_options(self.Options, self.provider, [environment_layer(self.provider, os.environ), keyword_layer(values)])
        elif values:
            raise ConfigError(f"give the {self.provider!r} options either as options= or as keyword arguments, not both")
        elif not isinstance(options, self.Options):
            raise ConfigError(f"options= for provider {self.provider!r} must be {self.Options.__name__}, not {type(options).__name__}")
        self.options = options
        self.progress = progress or SILENT

    def check_spec(self, spec: DeploymentSpec) -> None:
        """Refuse what this deployer must not deploy: a spec written for another provider."""
        if not isinstance(spec, DeploymentSpec):
            raise ConfigError(f"deploy() takes a cloudml.DeploymentSpec, not {type(spec).__name__}")
        if spec.provider is not None and spec.provider != self.provider.lower():  # spec.provider is lower-cased
            raise ConfigError(
                f"deployment {spec.name!r} is specified for provider {spec.provider!r}; this deployer is {self.provider!r}",
                hint=f"deploy it with get_deployer({spec.provider!r}) (cloudml deploy --provider {spec.provider}), "
                     "or leave DeploymentSpec.provider unset to deploy it with any provider",
            )

    def deploy(self, spec: DeploymentSpec) -> DeployResult:
        """Create the deployment, or converge an existing one of that name to `spec`.

        The same model twice is a no-op; a new model replaces the old one without downtime,
        and if the new one fails the old one keeps serving. A spec whose `provider` is set to
        another provider is refused with a ConfigError.
        """
        self.check_spec(spec)
        return self._deploy(spec)

    @abstractmethod
    def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        """`deploy`, for a spec already checked to be this provider's."""

    def update(self, spec: DeploymentSpec) -> DeployResult:
        """Like `deploy`, but refuses to create: the deployment must exist."""
        self.check_spec(spec)
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
    # builtins.list: inside the class body `list` is the method above
    def predict(self, name: str, *, instances: builtins.list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
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
