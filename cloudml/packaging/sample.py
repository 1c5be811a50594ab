"""A sample request file (`--sample FILE`): the instances a conversion is also verified on, and
where a TorchScript model, which records no input shapes, takes them from."""

from __future__ import annotations

import json
from pathlib import Path

from cloudml.errors import ConfigError

HINT = 'write the file as a request body: {"instances": [instance, ...]} (a JSON list of instances also works)'


def read_sample(path: Path | str) -> list:
    path = Path(path).expanduser()
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the sample file {path}: {exc.strerror}", hint=HINT) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the sample file {path} is not valid JSON: {exc}", hint=HINT) from None
    instances = value.get("instances") if isinstance(value, dict) else value
    if not isinstance(instances, list) or not instances:
        raise ConfigError(f"the sample file {path} holds no instances", hint=HINT)
    return instances
