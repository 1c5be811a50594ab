"""The deployment spec: what to deploy, with what resources, and (optionally) where.

One typed object for every provider, built in Python or by `cloudml.config.resolve` from a
`cloudml.yaml`, `CLOUDML_*` variables and flags. It holds no provider options: those belong to
the deployer (`get_deployer(name, **options)`). This module sits below the providers and the
config loader and imports neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cloudml.errors import ConfigError
from cloudml.validation import ConfigModel

# The strictest common rule of the three clouds (Azure endpoints: 3-32 chars, starting with a
# letter; SageMaker: alphanumerics and hyphens), so one name works on every provider.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")


class Resources(ConfigModel):
    config_title = "resources"

    instance_type: str | None = Field(default=None, description="Machine type; provider default when unset.")
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> Resources:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class DeploymentSpec(ConfigModel):
    """What a user asks for. Invalid values raise `cloudml.ConfigError`.

    `provider` is optional: unset, the spec can be deployed by any deployer; set, a deployer for
    another provider refuses it (so a spec written for aws never lands on local by mistake).
    """

    config_title = "deployment spec"

    name: str
    model: Path = Field(description="A .keras, .h5, .pt2, .pt or .onnx file, a SavedModel folder or a cloudml package.")
    provider: str | None = Field(default=None, description="The provider this spec is for; unset: whichever deploys it.")
    model_version: int | None = Field(default=None, ge=1, description="Version folder number; default 1.")
    runtime: Literal["auto", "onnx", "tensorflow"] = Field(
        default="auto", description="What serves the model: auto (ONNX Runtime when the conversion verifies, else TensorFlow), onnx, tensorflow.")
    sample: Path | None = Field(default=None, description="A request file whose instances the conversion is also verified on (required for TorchScript).")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

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

    @field_validator("model")
    @classmethod
    def _expand_model(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("sample")
    @classmethod
    def _expand_sample(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value else None

    @field_validator("provider")
    @classmethod
    def _lower_provider(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value


def parse_key_values(items: list[str] | None, *, what: str) -> dict[str, str]:
    """Turn repeated `KEY=VALUE` flags into a dict, refusing malformed ones."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} is not KEY=VALUE", hint=f"write it as --{what} KEY=VALUE")
        out[key] = value
    return out
