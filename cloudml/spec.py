"""The deployment spec: what to deploy, where and with what resources.

One typed object for every provider. It can be built in Python, loaded from a `cloudml.yaml`,
and overridden by `CLOUDML_*` environment variables and CLI flags (in rising priority).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloudml.errors import ConfigError

# The strictest common rule of the three clouds (Azure endpoints: 3-32 chars, starting with a
# letter; SageMaker: alphanumerics and hyphens), so one name works on every provider.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
ENV_PREFIX = "CLOUDML_"


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_type: str | None = Field(default=None, description="Machine type; provider default when unset.")
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> "Resources":
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class DeploymentSpec(BaseModel):
    """What a user asks for. Provider sections hold options only that provider understands."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: Path = Field(description="A .keras or .h5 file, or a SavedModel folder.")
    provider: str = "local"
    model_version: int | None = Field(default=None, ge=1, description="Version folder number; default 1.")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid deployment name: use 3-32 lowercase letters, digits and "
                "hyphens, starting with a letter and not ending with a hyphen (the rule every "
                "supported cloud accepts)"
            )
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value

    def options_for(self, provider: str | None = None) -> dict[str, Any]:
        return dict(self.provider_options.get(provider or self.provider, {}))


def parse_key_values(items: list[str] | None, *, what: str) -> dict[str, str]:
    """Turn repeated `KEY=VALUE` flags into a dict, refusing malformed ones."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} is not KEY=VALUE", hint=f"write it as --{what} KEY=VALUE")
        out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint="pass an existing file to --config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def _env_overrides(environ: Mapping[str, str], provider_names: set[str]) -> dict[str, Any]:
    """`CLOUDML_NAME`, `CLOUDML_MIN_REPLICAS`, ... and `CLOUDML_<PROVIDER>_<OPTION>`."""
    top = {"NAME": "name", "MODEL": "model", "PROVIDER": "provider", "MODEL_VERSION": "model_version"}
    resource = {"INSTANCE_TYPE": "instance_type", "MIN_REPLICAS": "min_replicas", "MAX_REPLICAS": "max_replicas"}
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX):]
        if rest in top:
            out[top[rest]] = value
        elif rest in resource:
            out.setdefault("resources", {})[resource[rest]] = value
        else:
            provider, _, option = rest.partition("_")
            if provider.lower() in provider_names and option:
                out.setdefault("provider_options", {}).setdefault(provider.lower(), {})[option.lower()] = value
    return out


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


def collect_settings(
    *,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    provider_names: set[str] | None = None,
) -> dict[str, Any]:
    """Merge a cloudml.yaml (optional), then `CLOUDML_*` variables, then `overrides`, unvalidated.

    In the YAML file, a top-level key named after a provider (`local:`, `aws:`, ...) holds that
    provider's options; any other unknown key is an error, so a typo never passes silently.
    A relative model path in the file is taken relative to the file.
    """
    if provider_names is None:
        from cloudml.providers.registry import provider_names as known

        provider_names = set(known())
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if config is not None:
        raw = _read_yaml(config)
        fields = set(DeploymentSpec.model_fields) - {"provider_options"}
        sections = {k: v for k, v in raw.items() if k in provider_names}
        unknown = set(raw) - fields - set(sections)
        if unknown:
            raise ConfigError(
                f"unknown key(s) in {config}: {', '.join(sorted(unknown))}",
                hint=f"known keys: {', '.join(sorted(fields))}; provider sections: {', '.join(sorted(provider_names))}",
            )
        for section, options in sections.items():
            if not isinstance(options, dict):
                raise ConfigError(f"section {section!r} in {config} must be a mapping of options")
        data = {k: v for k, v in raw.items() if k in fields}
        if data.get("model") and not Path(str(data["model"])).expanduser().is_absolute():
            data["model"] = str(config.resolve().parent / str(data["model"]))
        if sections:
            data["provider_options"] = sections
    data = _merge(data, _env_overrides(environ, provider_names))
    return _merge(data, overrides or {})


def load_spec(
    *,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    provider_names: set[str] | None = None,
) -> DeploymentSpec:
    """A validated spec from the merged settings (see `collect_settings`)."""
    return validate_spec(collect_settings(config=config, overrides=overrides, environ=environ, provider_names=provider_names))


def validate_spec(data: dict[str, Any]) -> DeploymentSpec:
    data = dict(data)
    missing = [key for key in ("name", "model") if not data.get(key)]
    if missing:
        raise ConfigError(
            f"missing {' and '.join(missing)} for the deployment",
            hint="pass MODEL and --name on the command line, or set them in cloudml.yaml",
        )
    data["model"] = Path(str(data["model"])).expanduser()
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid deployment spec:\n{format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "spec"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
