"""Provider registry: names mapped to import strings, loaded only when asked for.

Built-in providers live in this package; third-party packages register theirs under the
`cloudml.providers` entry-point group (`name = "package.module:DeployerClass"`). Nothing here
imports a provider or a cloud SDK until `get_deployer` or `load_provider` needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cloudml.errors import ConfigError, ProviderUnavailable

if TYPE_CHECKING:
    from cloudml.providers.base import Deployer

ENTRY_POINT_GROUP = "cloudml.providers"


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    target: str  # "module:Class"
    extra: str | None = None  # pip extra that brings the SDKs
    requires: tuple[str, ...] = ()  # importable modules the provider needs
    description: str = ""
    source: str = "built-in"

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def missing_modules(self) -> list[str]:
        return [mod for mod in self.requires if not _module_available(mod)]

    def install_hint(self) -> str:
        return f"pip install 'cloudml[{self.extra}]'" if self.extra else "pip install cloudml"

    def state(self) -> str:
        if self.missing_modules():
            return "missing-extra"
        if not _module_available(self.module):
            return "not-available"
        return "ready"


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


BUILTIN: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        ProviderEntry("local", "cloudml.providers.local:LocalDeployer",
                      requires=("tensorflow",), extra="tensorflow",
                      description="A serving process on this machine; no account, no Docker."),
        ProviderEntry("aws", "cloudml.providers.aws:SageMakerDeployer", extra="aws",
                      requires=("boto3", "sagemaker.core"), description="AWS SageMaker real-time endpoints."),
        ProviderEntry("gcp", "cloudml.providers.gcp:VertexDeployer", extra="gcp",
                      requires=("google.cloud.aiplatform", "google.cloud.storage"),
                      description="Google Vertex AI endpoints."),
        ProviderEntry("azure", "cloudml.providers.azure:AzureMLDeployer", extra="azure",
                      requires=("azure.ai.ml", "azure.identity"),
                      description="Azure ML managed online endpoints."),
    )
}


@lru_cache(maxsize=1)
def _third_party() -> dict[str, ProviderEntry]:
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            continue  # a plug-in cannot shadow a built-in provider
        dist = getattr(ep, "dist", None)
        found[ep.name] = ProviderEntry(ep.name, ep.value, source=f"plugin ({dist.name if dist else 'entry point'})")
    return found


def entries() -> dict[str, ProviderEntry]:
    return {**BUILTIN, **_third_party()}


def provider_names() -> list[str]:
    return sorted(entries())


def canonical_name(name: str, *, given_by: str | None = None) -> str:
    """The registered spelling of a provider name (case-insensitive); unknown names get a suggestion."""
    known = entries()
    if name in known:
        return name
    folded = {key.lower(): key for key in known}
    if name.lower() in folded:
        return folded[name.lower()]
    from cloudml.validation import did_you_mean

    suggestion = did_you_mean(name, known)
    choices = f"choose one of: {', '.join(sorted(known))} (or install a plug-in that registers it)"
    raise ConfigError(
        f"unknown provider {name!r}" + (f" (from {given_by})" if given_by else ""),
        hint=f"did you mean {suggestion!r}? {choices}" if suggestion else choices,
    )


def load_provider(name: str) -> type[Deployer]:
    from cloudml.providers.base import Deployer

    name = canonical_name(name)
    entry = entries()[name]
    missing = entry.missing_modules()
    if missing:
        raise ProviderUnavailable(
            f"provider {name!r} needs {', '.join(missing)}, which is not installed",
            hint=f"install it with: {entry.install_hint()}",
        )
    if not _module_available(entry.module):
        raise ProviderUnavailable(
            f"provider {name!r} is not part of this cloudml release yet",
            hint="use --provider local, or upgrade cloudml",
        )
    module_name, _, attr = entry.target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ProviderUnavailable(f"provider {name!r} could not be loaded from {entry.target}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Deployer)):
        raise ProviderUnavailable(f"provider {name!r} ({entry.target}) is not a cloudml Deployer subclass")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ProviderUnavailable(
            f"provider {name!r} ({entry.target}) does not implement {', '.join(missing)}",
            hint="a provider implements _deploy(spec), get, list, predict, logs and delete (see cloudml.providers.base.Deployer); "
                 "upgrade the plug-in for this cloudml release",
        )
    return cls


def get_deployer(provider: str = "local", **options: Any) -> Deployer:
    """The deployer for `provider` (any case), configured with keyword `options` over
    `CLOUDML_<PROVIDER>_<OPTION>` variables, checked as on the CLI (see `cloudml.providers.options`)."""
    return load_provider(provider)(**options)
