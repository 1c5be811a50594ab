"""Where a deployment's settings come from: `cloudml.yaml`, then `CLOUDML_*` variables, then flags.

`resolve` is the one place that merges them, for the CLI and for `cloudml.load_spec`. It reads the
environment once, picks the provider, checks that provider's options by the rules every entry
point shares (`cloudml.providers.options`), and remembers where each value came from, so an error
names the file, variable or flag to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudml.errors import ConfigError
from cloudml.providers.options import OptionLayer, ProviderOptions, environment_layer, flag_layer, resolve_options
from cloudml.providers.registry import canonical_name, load_provider, provider_names
from cloudml.spec import DeploymentSpec, parse_key_values
from cloudml.validation import did_you_mean

if TYPE_CHECKING:
    from cloudml.progress import Progress
    from cloudml.providers.base import Deployer

DEFAULT_PROVIDER = "local"
DEFAULT_CONFIG = Path("cloudml.yaml")
# The spec's fields that a CLOUDML_* variable sets (provider options: CLOUDML_<PROVIDER>_<OPTION>).
SPEC_VARIABLES: dict[str, tuple[str, ...]] = {
    "CLOUDML_NAME": ("name",),
    "CLOUDML_MODEL": ("model",),
    "CLOUDML_MODEL_VERSION": ("model_version",),
    "CLOUDML_INSTANCE_TYPE": ("resources", "instance_type"),
    "CLOUDML_MIN_REPLICAS": ("resources", "min_replicas"),
    "CLOUDML_MAX_REPLICAS": ("resources", "max_replicas"),
}
SPEC_KEYS = set(DeploymentSpec.model_fields)
Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Config:
    """The resolved settings: the provider, its typed options, and the spec's fields."""

    provider: str
    options: ProviderOptions
    deployer_class: type[Deployer]
    settings: dict[str, Any]  # the spec's fields as merged, not yet validated (a `list` needs no name)
    sources: dict[Path_, str] = field(default_factory=dict)  # field path -> where its value came from
    file: Path | None = None

    @property
    def name(self) -> str | None:
        return self.settings.get("name")

    def spec(self) -> DeploymentSpec:
        """The validated spec, for this provider; errors name the file, variable or flag to fix."""
        missing = [key for key in ("name", "model") if not self.settings.get(key)]
        if missing:
            raise ConfigError(
                f"missing {' and '.join(missing)} for the deployment",
                hint="pass MODEL and --name on the command line, or set them in cloudml.yaml",
            )
        return DeploymentSpec.validated({**self.settings, "provider": self.provider}, sources=self.sources)

    def deployer(self, *, progress: Progress | None = None) -> Deployer:
        return self.deployer_class(options=self.options, progress=progress)


class _Layers:
    """Nested settings merged layer by layer, remembering which layer set each leaf."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sources: dict[Path_, str] = {}

    def add(self, values: Mapping[str, Any], label, path: Path_ = ()) -> None:
        target = self.data
        for part in path:
            target = target.setdefault(part, {})
        for key, value in values.items():
            where = path + (key,)
            if isinstance(value, Mapping) and isinstance(target.get(key, {}), dict):
                target.setdefault(key, {})
                self.add(value, label, where)
            elif value is not None:
                target[key] = value
                self.sources[where] = label(where)


def resolve(
    *,
    config: Path | str | None = None,
    provider: str | None = None,
    spec: Mapping[str, Any] | None = None,
    spec_labels: Mapping[str, str] | None = None,
    options: Sequence[OptionLayer] = (),
    environ: Mapping[str, str] | None = None,
    default_config: Path | None = None,
) -> Config:
    """Merge the config file, the environment and the flags (in rising priority).

    `config`: the file to read (else `CLOUDML_CONFIG`, else `default_config` when it exists).
    `provider`: the flag (else `CLOUDML_PROVIDER`, else the file's `provider:`, else local).
    `spec`: flag values for the spec's fields (nested: `{"resources": {"min_replicas": 2}}`);
    `spec_labels` names the flag of each key ("name", "resources.min_replicas") for error messages.
    `options`: flag layers for the provider options, lowest first (`flag_layer`, `OptionLayer`).
    `environ`: the environment (default `os.environ`), read here and nowhere else.
    """
    environ = dict(os.environ if environ is None else environ)
    path = _config_file(config, environ, default_config)
    raw = _read_yaml(path) if path is not None else {}
    names = set(provider_names())
    if path is not None:
        _check_keys(raw, path, names)

    layers = _Layers()
    if path is not None:
        from_file = {k: v for k, v in raw.items() if k in SPEC_KEYS}
        if from_file.get("model") and not Path(str(from_file["model"])).expanduser().is_absolute():
            from_file["model"] = str(path.resolve().parent / str(from_file["model"]))
        layers.add(from_file, lambda where: f"{path} ({'.'.join(where)})")
    for variable, where in SPEC_VARIABLES.items():
        if environ.get(variable):
            layers.add({where[-1]: environ[variable]}, lambda _, v=variable: f"environment variable {v}", where[:-1])
    labels = dict(spec_labels or {})
    layers.add(dict(spec or {}), lambda where: labels.get(".".join(where)) or labels.get(where[0], "the command line"))

    chosen, given_by = _provider(provider, environ, layers, path)
    name = canonical_name(chosen, given_by=given_by)
    layers.data.pop("provider", None)
    deployer_class = load_provider(name)

    option_layers = []
    section = {str(option): value for option, value in (raw.get(name) or {}).items()}
    if section:
        option_layers.append(OptionLayer(section, labels={option: f"{path} ({name}.{option})" for option in section},
                                         spell=lambda option: f"{option}: under {name}: in {path}"))
    option_layers.append(environment_layer(name, environ))
    option_layers.extend(options)
    typed = resolve_options(deployer_class.Options, name, option_layers)
    return Config(provider=name, options=typed, deployer_class=deployer_class, settings=layers.data,
                  sources=layers.sources, file=path)


def load_spec(*, config: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
              environ: Mapping[str, str] | None = None) -> DeploymentSpec:
    """A validated spec from a cloudml.yaml, `CLOUDML_*` variables and `overrides`, as the CLI builds it."""
    return resolve(config=config, spec=overrides, spec_labels={k: "overrides" for k in overrides or {}}, environ=environ).spec()


def option_flags(items: Sequence[str] | None) -> OptionLayer:
    """Repeated `-o KEY=VALUE` flags as an option layer."""
    return flag_layer(parse_key_values(list(items or []), what="option"))


def _config_file(config: Path | str | None, environ: Mapping[str, str], default: Path | None) -> Path | None:
    if config is not None:
        return Path(config)
    if environ.get("CLOUDML_CONFIG"):
        return Path(environ["CLOUDML_CONFIG"])
    return default if default is not None and default.is_file() else None


def _provider(flag: str | None, environ: Mapping[str, str], layers: _Layers, path: Path | None) -> tuple[str, str | None]:
    if flag:
        return flag, "--provider"
    if environ.get("CLOUDML_PROVIDER"):
        return environ["CLOUDML_PROVIDER"], "environment variable CLOUDML_PROVIDER"
    in_file = layers.data.get("provider")
    if in_file:
        return str(in_file), layers.sources.get(("provider",), str(path))
    return DEFAULT_PROVIDER, None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint="pass an existing file to --config (or CLOUDML_CONFIG)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def _check_keys(raw: Mapping[str, Any], path: Path, providers: set[str]) -> None:
    """Spec fields and provider sections only: a typo never passes silently."""
    unknown = sorted(str(key) for key in raw if key not in SPEC_KEYS and key not in providers)
    if unknown:
        suggestion = did_you_mean(unknown[0], SPEC_KEYS | providers)
        hint = f"known keys: {', '.join(sorted(SPEC_KEYS))}; provider sections: {', '.join(sorted(providers))}"
        raise ConfigError(f"unknown key(s) in {path}: {', '.join(unknown)}",
                          hint=f"did you mean {suggestion}? {hint}" if suggestion else hint)
    for key in providers & set(raw):
        if raw[key] is not None and not isinstance(raw[key], dict):
            raise ConfigError(f"section {key!r} in {path} must be a mapping of options")

