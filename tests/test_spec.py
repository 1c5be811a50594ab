"""The deployment spec: cloudml.yaml, CLOUDML_* variables and flags, in that order of priority."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudml.errors import ConfigError
from cloudml.spec import DeploymentSpec, load_spec, parse_key_values

PROVIDERS = {"local", "aws", "gcp", "azure"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_env_and_flags_layer_in_order(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", """
name: from-yaml
model: models/cnn.h5
resources: {instance_type: ml.m5.large, min_replicas: 1, max_replicas: 2}
env: {LOG_LEVEL: info}
tags: {team: vision}
local: {port: 9000}
aws: {region: eu-west-1}
""")
    environ = {"CLOUDML_MAX_REPLICAS": "4", "CLOUDML_AWS_REGION": "us-east-2", "CLOUDML_NAME": "from-env", "HOME": "/x"}
    spec = load_spec(config=config, overrides={"name": "from-flag"}, environ=environ, provider_names=PROVIDERS)
    assert spec.name == "from-flag"  # flag beats env beats yaml
    assert spec.model == tmp_path / "models" / "cnn.h5"  # relative to the config file
    assert spec.resources.instance_type == "ml.m5.large" and spec.resources.max_replicas == 4
    assert spec.env == {"LOG_LEVEL": "info"} and spec.tags == {"team": "vision"}
    assert spec.options_for("aws") == {"region": "us-east-2"}
    assert spec.options_for("local") == {"port": 9000}
    assert spec.provider == "local"


def test_unknown_yaml_key_is_an_error_naming_the_known_ones(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", "name: a-model\nmodel: m.h5\nresorces: {}\n")
    with pytest.raises(ConfigError) as err:
        load_spec(config=config, environ={}, provider_names=PROVIDERS)
    assert "resorces" in err.value.message and "resources" in err.value.hint


@pytest.mark.parametrize("text, fragment", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "mapping at the top level"),
    ("name: ok-name\nmodel: m.h5\naws: 3\n", "must be a mapping"),
])
def test_malformed_config_files(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        load_spec(config=_write(tmp_path / "c.yaml", text), environ={}, provider_names=PROVIDERS)
    assert fragment in err.value.message


@pytest.mark.parametrize("name", ["A", "ab", "Upper-case", "ends-with-", "9starts-with-digit", "x" * 33, "under_score"])
def test_names_that_some_cloud_would_refuse_are_rejected(name):
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": name, "model": "m.h5"}, environ={}, provider_names=PROVIDERS)
    assert "not a valid deployment name" in err.value.message


def test_replica_bounds_and_missing_fields():
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": "abc", "model": "m.h5", "resources": {"min_replicas": 3, "max_replicas": 2}}, environ={}, provider_names=PROVIDERS)
    assert "max_replicas (2) is below min_replicas (3)" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": "abc"}, environ={}, provider_names=PROVIDERS)
    assert "missing model" in err.value.message


def test_key_value_flags():
    assert parse_key_values(["A=1", "B=x=y"], what="env") == {"A": "1", "B": "x=y"}
    with pytest.raises(ConfigError):
        parse_key_values(["novalue"], what="env")


def test_spec_is_typed_and_serialisable():
    spec = DeploymentSpec(name="mnist-cnn", model="cnn.h5", resources={"min_replicas": 2})
    assert spec.model == Path("cnn.h5") and spec.resources.min_replicas == 2
    assert DeploymentSpec.model_validate_json(spec.model_dump_json()) == spec
