"""A provider's typed options, and the one set of rules for giving them.

Options come in layers, each later one winning: a `cloudml.yaml` section, `CLOUDML_<PROVIDER>_<OPTION>`
variables, then flags (`-o`, `--skip-preflight`) or keyword arguments in Python. The same rules hold
whichever way they come: an unknown option is refused with a did-you-mean, naming where it was
given; text reaches list and map options as `a,b` / `k=v,k2=v2` or JSON; an empty variable is unset.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cloudml.errors import ConfigError
from cloudml.validation import ConfigModel, collection_kind, describe_fields, did_you_mean, parse_text


class ProviderOptions(ConfigModel):
    """Base for each provider's typed options (region, project, home folder, ...)."""

    config_title = "provider options"


Options = TypeVar("Options", bound=ProviderOptions)


def env_prefix(provider: str) -> str:
    return f"CLOUDML_{provider.upper().replace('-', '_')}_"


def env_var(provider: str, option: str) -> str:
    return env_prefix(provider) + option.upper()


@dataclass(frozen=True)
class OptionLayer:
    """Option values from one place, with how that place names each one (for error messages)."""

    values: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)  # option -> "environment variable CLOUDML_AWS_REGION"
    spell: Callable[[str], str] = str  # how a user would give `option` here (for suggestions)
    refusal: str | None = None  # the message when a provider has none of these options ({provider} filled in)
    hint: str | None = None  # and the hint then

    def label(self, option: str) -> str:
        return self.labels.get(option) or self.spell(option)


def environment_layer(provider: str, environ: Mapping[str, str]) -> OptionLayer:
    """`CLOUDML_<PROVIDER>_<OPTION>` variables; empty ones count as unset."""
    prefix = env_prefix(provider)
    found = {key[len(prefix):].lower(): key for key, value in environ.items() if key.startswith(prefix) and value != ""}
    return OptionLayer(
        values={option: environ[key] for option, key in found.items()},
        labels={option: f"environment variable {key}" for option, key in found.items()},
        spell=lambda option: env_var(provider, option),
    )


def keyword_layer(values: Mapping[str, Any]) -> OptionLayer:
    return OptionLayer(values=dict(values), labels={k: f"keyword argument {k}=" for k in values}, spell=lambda k: f"{k}=")


def flag_layer(items: Mapping[str, str]) -> OptionLayer:
    """`-o KEY=VALUE` flags (already split)."""
    return OptionLayer(values=dict(items), labels={k: f"-o {k}={v}" for k, v in items.items()}, spell=lambda k: f"-o {k}=...")


def resolve_options(options_cls: type[Options], provider: str, layers: Sequence[OptionLayer]) -> Options:
    """The typed options from `layers` (later ones win); any error is a ConfigError naming its source."""
    values: dict[str, Any] = {}
    given_by: dict[str, OptionLayer] = {}
    for layer in layers:
        for option, value in layer.values.items():
            values[option] = value
            given_by[option] = layer
    fields = options_cls.model_fields
    for option, layer in given_by.items():
        if option not in fields:
            raise unknown_option(provider, option, layer, fields)
    for option, value in values.items():
        kind = collection_kind(fields[option].annotation)
        if kind and isinstance(value, str):
            values[option] = parse_text(value, kind, label=given_by[option].label(option))
    return options_cls.validated(
        values,
        sources={(option,): layer.label(option) for option, layer in given_by.items()},
        title=f"options for provider {provider!r}",
        hint=f"`cloudml providers {provider}` lists what it accepts",
    )


def unknown_option(provider: str, option: str, layer: OptionLayer, known: Collection[str]) -> ConfigError:
    suggestion = did_you_mean(option, known)
    listing = f"`cloudml providers {provider}` describes its options ({', '.join(known) or 'none'})"
    if suggestion:
        hint = f"did you mean {layer.spell(suggestion)}? {listing}"
    else:
        hint = f"{layer.hint}; {listing}" if layer.hint else listing
    message = layer.refusal.format(provider=repr(provider)) if layer.refusal else f"{layer.label(option)}: provider {provider!r} has no option {option!r}"
    return ConfigError(message, hint=hint)


def describe_options(options_cls: type[ProviderOptions], provider: str) -> list[dict[str, Any]]:
    """Each option with its type, default, environment variable and description (`cloudml providers NAME`)."""
    rows = describe_fields(options_cls)
    for row in rows:
        row["env"] = env_var(provider, row["name"])
        kind = collection_kind(options_cls.model_fields[row["name"]].annotation)
        if kind:
            row["syntax"] = {"list": "a,b or JSON array", "map": "k=v,k2=v2 or JSON object"}[kind]
    return rows
