"""Typed settings (the spec, provider options) whose validation errors are cloudml ConfigErrors.

An error says which field was wrong, why, and where its value came from (a file, an environment
variable, a flag), so a stray `CLOUDML_*` variable is named rather than guessed at. Settings given
as text (environment variables, `-o` flags) reach list and map fields through one syntax: a JSON
array/object, or comma-separated items (`a,b` and `k=v,k2=v2`).
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined

from cloudml.errors import ConfigError

# Where each value came from, by field path: {("resources", "min_replicas"): "environment variable CLOUDML_MIN_REPLICAS"}.
Sources = Mapping[tuple[str, ...], str]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `word` (case-insensitive), if any is close enough."""
    by_lower = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def _origin(loc: tuple[str, ...], sources: Sources) -> str | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in sources:
            return sources[loc[:end]]
    # An error on a whole section (resources: max below min): every value given inside it.
    inside = sorted({label for path, label in sources.items() if path[: len(loc)] == loc and loc})
    return ", ".join(inside) or None


def _fields_at(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    for part in path:
        field = model.model_fields.get(part)
        inner = field and field.annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    return list(model.model_fields)


def format_validation_error(exc: ValidationError, sources: Sources | None = None, model: type[BaseModel] | None = None) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
            suggestion = did_you_mean(loc[-1], _fields_at(model, loc[:-1])) if model and loc else None
            if suggestion:
                message += f"; did you mean {suggestion}?"
        origin = _origin(loc, sources or {})
        lines.append(f"  {'.'.join(loc) or 'value'}: {message}" + (f" (from {origin})" if origin else ""))
    return "\n".join(lines)


class ConfigModel(BaseModel):
    """A pydantic model that refuses bad input with a ConfigError (exit code 2), not a ValidationError."""

    model_config = ConfigDict(extra="forbid")
    config_title: ClassVar[str] = "settings"  # as in "invalid settings:"

    def __init__(self, /, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise self.__class__._refusal(exc) from None

    # Validates exactly as pydantic's own __init__ does, so pydantic may skip it when this model
    # is nested in another (the outer model then reports the error, with its full path).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def _refusal(cls, exc: ValidationError, *, sources: Sources | None = None, title: str | None = None, hint: str | None = None) -> ConfigError:
        return ConfigError(f"invalid {title or cls.config_title}:\n{format_validation_error(exc, sources, cls)}", hint=hint)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any):
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise cls._refusal(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, **kwargs: Any):
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise cls._refusal(exc) from None

    @classmethod
    def validated(cls, data: Mapping[str, Any], *, sources: Sources | None = None, title: str | None = None, hint: str | None = None):
        """Validate `data`; an error names the source of each bad value."""
        try:
            return super().model_validate(data)
        except ValidationError as exc:
            raise cls._refusal(exc, sources=sources, title=title, hint=hint) from None


# --- values given as text -------------------------------------------------------------------

def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def collection_kind(annotation: Any) -> str | None:
    """"list" or "map" for fields that take several values, None for the rest."""
    inner = _without_none(annotation)
    origin = typing.get_origin(inner) or inner
    if origin in (list, tuple, set, frozenset) or (isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset))):
        return "list"
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, dict)):
        return "map"
    return None


TEXT_SYNTAX = {"list": 'a,b,c or a JSON array ["a", "b"]', "map": 'k=v,k2=v2 or a JSON object {"k": "v"}'}


def parse_text(text: str, kind: str, *, label: str) -> list[Any] | dict[str, Any]:
    """A list or map field's value written as text (an environment variable, an `-o` flag)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{label}: not valid JSON ({exc})", hint=f"write it as {TEXT_SYNTAX[kind]}") from None
        if not isinstance(value, list if kind == "list" else dict):
            raise ConfigError(f"{label}: expected a {kind}, got JSON {type(value).__name__}", hint=f"write it as {TEXT_SYNTAX[kind]}")
        return value
    items = [item.strip() for item in stripped.split(",") if item.strip()]
    if kind == "list":
        return items
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{label}: {item!r} is not KEY=VALUE", hint=f"write it as {TEXT_SYNTAX[kind]}")
        pairs[key.strip()] = value.strip()
    return pairs


# --- discovery ------------------------------------------------------------------------------

def type_name(annotation: Any) -> str:
    """A short, readable type: `str | None`, `list[str]`, `'key' | 'aml_token'`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def describe_fields(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Each field's name, type, default (None when required) and description."""
    rows = []
    for name, field in model.model_fields.items():
        required = field.is_required()
        if required:
            default = None
        elif field.default_factory is not None:
            # cloudml's models use only no-argument factories, never pydantic's validated-data form
            default = cast(Callable[[], Any], field.default_factory)()
        else:
            default = None if field.default is PydanticUndefined else field.default
        rows.append({
            "name": name,
            "type": type_name(field.annotation),
            "required": required,
            "default": str(default) if isinstance(default, Path) else default,
            "description": field.description or "",
        })
    return rows
