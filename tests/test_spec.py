"""The deployment spec: its rules, whether built in Python or from cloudml.yaml and flags
(the layering itself: tests/test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudml.config import load_spec
from cloudml.errors import ConfigError
from cloudml.spec import DeploymentSpec, Resources, parse_key_values


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_yaml_key_is_an_error_naming_the_known_ones(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", "name: a-model\nmodel: m.h5\nresorces: {}\n")
    with pytest.raises(ConfigError) as err:
        load_spec(config=config, environ={})
    assert "resorces" in err.value.message and "did you mean resources?" in err.value.hint


@pytest.mark.parametrize("text, fragment", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "mapping at the top level"),
    ("name: ok-name\nmodel: m.h5\naws: 3\n", "must be a mapping"),
])
def test_malformed_config_files(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        load_spec(config=_write(tmp_path / "c.yaml", text), environ={})
    assert fragment in err.value.message


@pytest.mark.parametrize("name", ["A", "ab", "Upper-case", "ends-with-", "9starts-with-digit", "x" * 33, "under_score"])
def test_names_that_some_cloud_would_refuse_are_rejected(name):
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": name, "model": "m.h5"}, environ={})
    assert "not a valid deployment name" in err.value.message


def test_replica_bounds_and_missing_fields():
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": "abc", "model": "m.h5", "resources": {"min_replicas": 3, "max_replicas": 2}}, environ={})
    assert "max_replicas (2) is below min_replicas (3)" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_spec(overrides={"name": "abc"}, environ={})
    assert "missing model" in err.value.message


def test_key_value_flags():
    assert parse_key_values(["A=1", "B=x=y"], what="env") == {"A": "1", "B": "x=y"}
    with pytest.raises(ConfigError):
        parse_key_values(["novalue"], what="env")


def test_spec_is_typed_and_serialisable():
    spec = DeploymentSpec(name="mnist-cnn", model="cnn.h5", resources={"min_replicas": 2})
    assert spec.model == Path("cnn.h5") and spec.resources.min_replicas == 2
    assert DeploymentSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("build, fragment", [
    (lambda: DeploymentSpec(name="My_Model", model="m.h5"), "name: 'My_Model' is not a valid deployment name"),
    (lambda: DeploymentSpec(name="abc", model="m.h5", resources={"min_replicas": 3, "max_replicas": 2}),
     "resources: max_replicas (2) is below min_replicas (3)"),
    (lambda: DeploymentSpec(name="abc", model="m.h5", nmae="x"), "nmae: unknown field; did you mean name?"),
    (lambda: DeploymentSpec.model_validate({"name": "abc"}), "model: Field required"),
    (lambda: DeploymentSpec.model_validate_json('{"name": "abc", "model": "m.h5", "model_version": 0}'), "model_version"),
    (lambda: Resources(min_replicas=-1), "min_replicas: Input should be greater than or equal to 0"),
])
def test_a_spec_built_in_python_refuses_bad_values_with_a_config_error(build, fragment):
    with pytest.raises(ConfigError) as err:
        build()
    assert fragment in err.value.message and err.value.exit_code == 2


def test_provider_is_optional_and_case_insensitive():
    assert DeploymentSpec(name="abc", model="m.h5").provider is None
    assert DeploymentSpec(name="abc", model="m.h5", provider="AWS").provider == "aws"
