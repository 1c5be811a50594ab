"""Request bodies checked against the azure-ai-ml SDK's own REST models (the generated
`arm_ml_service` types, which follow the service's API spec): an unknown property, a missing
required one or a value of the wrong JSON type is a 400, as Azure ML answers."""

from __future__ import annotations

import functools
import types
import typing
from typing import Any


class InvalidBody(ValueError):
    pass


@functools.cache
def _models():
    from azure.ai.ml._restclient.arm_ml_service import models

    return models


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The field types of one of the SDK's REST models, forward references resolved."""
    import azure.ai.ml._restclient.arm_ml_service.models._models as module

    namespace = {**vars(module), **vars(_models()), "_models": _models(), "typing": typing}
    try:
        return typing.get_type_hints(cls, globalns=namespace)
    except Exception:  # noqa: BLE001 - an unresolvable hint: check this model loosely
        return {attr: typing.Optional[Any] for klass in cls.__mro__ for attr in getattr(klass, "__annotations__", {})}  # noqa: UP045 - a value, not an annotation


def _optional(hint: Any) -> tuple[bool, Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(args) < len(typing.get_args(hint)), (args[0] if len(args) == 1 else typing.Union[tuple(args)])  # noqa: UP007 - built at run time
    return False, hint


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and getattr(hint, "_is_model", False)


def _resolve(cls: type, data: dict) -> type:
    """The subtype a discriminator value (endpointComputeType, datastoreType, ...) selects."""
    mapping = getattr(cls, "__mapping__", None)
    if not mapping:
        return cls
    cls({})
    field = cls._get_discriminator([])  # type: ignore[attr-defined]
    if field is None:
        return cls
    value = data.get(field._rest_name)
    if value is None:
        raise InvalidBody(f"the property '{field._rest_name}' is required")
    if value not in mapping:
        raise InvalidBody(f"'{value}' is not a valid {field._rest_name}; expected one of {sorted(mapping)}")
    return mapping[value]


def check(model: str, body: Any) -> None:
    """Raise InvalidBody with the offending JSON path when `body` does not fit `model`."""
    _check(getattr(_models(), model), body, "$")


def _check(cls: type, data: Any, path: str) -> None:
    if not isinstance(data, dict):
        raise InvalidBody(f"{path} must be a JSON object")
    cls = _resolve(cls, data)
    cls({})  # the SDK's models compute their field table on first construction
    fields = {rf._rest_name: (attr, rf) for attr, rf in cls._attr_to_rest_field.items()}  # type: ignore[attr-defined]
    hints = _hints(cls)
    for key, value in data.items():
        if key not in fields:
            raise InvalidBody(f"{path}.{key}: unknown property for {cls.__name__} (known: {', '.join(sorted(fields))})")
        attr, _ = fields[key]
        if value is not None:
            _check_value(_optional(hints.get(attr, Any))[1], value, f"{path}.{key}")
    for rest_name, (attr, rf) in fields.items():
        optional, _ = _optional(hints.get(attr, Any))
        readonly = list(getattr(rf, "_visibility", None) or []) == ["read"]
        if not optional and not readonly and data.get(rest_name) is None and not rf._is_discriminator:
            raise InvalidBody(f"{path}.{rest_name}: the property is required for {cls.__name__}")


def _check_value(hint: Any, value: Any, path: str) -> None:
    origin = typing.get_origin(hint)
    if _is_model(hint):
        _check(hint, value, path)
    elif origin is list:
        if not isinstance(value, list):
            raise InvalidBody(f"{path} must be a JSON array")
        (item,) = typing.get_args(hint) or (Any,)
        for index, element in enumerate(value):
            _check_value(item, element, f"{path}[{index}]")
    elif origin is dict:
        if not isinstance(value, dict):
            raise InvalidBody(f"{path} must be a JSON object")
        item = (typing.get_args(hint) or (Any, Any))[1]
        for key, element in value.items():
            if element is not None:
                _check_value(_optional(item)[1], element, f"{path}.{key}")
    elif hint is bool and not isinstance(value, bool):
        raise InvalidBody(f"{path} must be true or false, not {value!r}")
    elif hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidBody(f"{path} must be an integer, not {value!r}")
    elif hint is str and not isinstance(value, str):
        raise InvalidBody(f"{path} must be a string, not {value!r}")
