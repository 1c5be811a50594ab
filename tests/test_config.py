"""Where settings come from: cloudml.yaml < CLOUDML_* variables < flags, and the one set of
option rules the CLI and the Python API share (fast: no model, no TensorFlow, no cloud)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import run_cli
from pydantic import Field

import cloudml
from cloudml.config import option_flags, resolve
from cloudml.errors import ConfigError
from cloudml.providers.options import OptionLayer, ProviderOptions, environment_layer, resolve_options
from cloudml.spec import DeploymentSpec


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _needs_aws():
    pytest.importorskip("boto3")
    pytest.importorskip("sagemaker.core")


def test_file_then_environment_then_flags(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", """
name: from-yaml
model: models/cnn.h5
resources: {instance_type: ml.m5.large, min_replicas: 1, max_replicas: 2}
env: {LOG_LEVEL: info}
local: {port: 9000, host: 0.0.0.0, drain_seconds: 5}
""")
    environ = {"CLOUDML_NAME": "from-env", "CLOUDML_MAX_REPLICAS": "4", "CLOUDML_LOCAL_PORT": "9001", "CLOUDML_LOCAL_DRAIN_SECONDS": "6"}
    resolved = resolve(config=config, spec={"name": "from-flag", "env": {"EXTRA": "1"}}, options=[option_flags(["port=9002"])],
                       environ=environ)
    spec = resolved.spec()
    assert spec.name == "from-flag"  # flag beats env beats file
    assert spec.model == tmp_path / "models" / "cnn.h5"  # relative to the file
    assert (spec.resources.instance_type, spec.resources.max_replicas) == ("ml.m5.large", 4)
    assert spec.env == {"LOG_LEVEL": "info", "EXTRA": "1"}
    assert resolved.provider == "local" and spec.provider == "local"
    options = resolved.options
    assert (options.port, options.drain_seconds, options.host) == (9002, 6.0, "0.0.0.0")


def test_provider_comes_from_the_flag_the_environment_or_the_file_in_any_case(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", "provider: LOCAL\n")
    assert resolve(config=config, environ={}).provider == "local"
    _needs_aws()
    assert resolve(config=config, environ={"CLOUDML_PROVIDER": "Aws"}).provider == "aws"
    resolved = resolve(config=config, provider="AWS", spec={"name": "abc", "model": "m.h5"}, environ={"CLOUDML_PROVIDER": "local"})
    assert resolved.provider == "aws" and resolved.spec().provider == "aws"


def test_an_unknown_provider_names_where_it_was_set_and_suggests_one():
    with pytest.raises(ConfigError) as err:
        resolve(environ={"CLOUDML_PROVIDER": "lcoal"})
    assert "unknown provider 'lcoal' (from environment variable CLOUDML_PROVIDER)" in err.value.message
    assert "did you mean 'local'?" in err.value.hint


def test_the_environment_is_read_once_and_the_deployer_does_not_read_it_again(tmp_path, monkeypatch):
    class Counting(Mapping):
        def __init__(self, data):
            self.data, self.reads = data, 0

        def __getitem__(self, key):
            return self.data[key]

        def __iter__(self):
            self.reads += 1
            return iter(self.data)

        def __len__(self):
            return len(self.data)

    environ = Counting({"CLOUDML_LOCAL_PORT": "9100", "CLOUDML_NAME": "from-env", "CLOUDML_LOCAL_HOME": str(tmp_path)})
    # What the process environment says afterwards must not matter (a bad value would be refused).
    monkeypatch.setenv("CLOUDML_LOCAL_PORT", "not-a-port")
    resolved = resolve(environ=environ)
    deployer = resolved.deployer()
    assert environ.reads == 1
    assert deployer.options.port == 9100 and deployer.options.home == tmp_path and resolved.name == "from-env"


def test_python_and_cli_share_the_option_rules(monkeypatch):
    monkeypatch.setenv("CLOUDML_LOCAL_PORT", "9200")
    assert cloudml.get_deployer("local").options.port == 9200  # the environment, as on the CLI
    assert cloudml.get_deployer("local", port=9300).options.port == 9300  # code beats the environment
    monkeypatch.setenv("CLOUDML_LOCAL_PROT", "1")
    for build in (lambda: cloudml.get_deployer("local"), lambda: resolve()):
        with pytest.raises(ConfigError) as err:
            build()
        assert "environment variable CLOUDML_LOCAL_PROT: provider 'local' has no option 'prot'" in err.value.message
        assert "did you mean CLOUDML_LOCAL_PORT?" in err.value.hint


@pytest.mark.parametrize("layer, message, hint", [
    (option_flags(["prot=1"]), "-o prot=1: provider 'local' has no option 'prot'", "did you mean -o port=...?"),
    (environment_layer("local", {"CLOUDML_LOCAL_STARTUP_TIMOUT": "5"}), "CLOUDML_LOCAL_STARTUP_TIMOUT", "did you mean CLOUDML_LOCAL_STARTUP_TIMEOUT?"),
])
def test_unknown_options_get_a_suggestion_in_the_words_of_where_they_were_given(layer, message, hint):
    with pytest.raises(ConfigError) as err:
        resolve(options=[layer], environ={})
    assert message in err.value.message and hint in err.value.hint


def test_unknown_options_in_the_file_and_in_code_get_a_suggestion(tmp_path):
    config = _write(tmp_path / "cloudml.yaml", "local: {hots: 0.0.0.0}\n")
    with pytest.raises(ConfigError) as err:
        resolve(config=config, environ={})
    assert f"{config} (local.hots)" in err.value.message and "did you mean host:" in err.value.hint
    with pytest.raises(ConfigError) as err:
        cloudml.get_deployer("local", request_timout=3)
    assert "keyword argument request_timout=" in err.value.message and "did you mean request_timeout=?" in err.value.hint


def test_a_bad_value_names_the_variable_or_flag_it_came_from(tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve(environ={"CLOUDML_LOCAL_PORT": "eighty"})
    assert "port:" in err.value.message and "(from environment variable CLOUDML_LOCAL_PORT)" in err.value.message
    with pytest.raises(ConfigError) as err:
        resolve(spec={"name": "abc", "model": "m.h5"}, environ={"CLOUDML_MIN_REPLICAS": "two"}).spec()
    assert "resources.min_replicas" in err.value.message and "(from environment variable CLOUDML_MIN_REPLICAS)" in err.value.message
    with pytest.raises(ConfigError) as err:
        resolve(spec={"name": "Bad_Name", "model": "m.h5"}, spec_labels={"name": "--name"}, environ={}).spec()
    assert "not a valid deployment name" in err.value.message and err.value.message.endswith("(from --name)")


def test_empty_variables_count_as_unset():
    assert resolve(environ={"CLOUDML_LOCAL_PORT": "", "CLOUDML_LOCAL_PROT": ""}).options.port is None


def test_list_options_from_flags_and_the_environment():
    _needs_aws()
    spaced = resolve(provider="aws", options=[option_flags(["rollback_alarms=high-5xx, high-latency"])], environ={})
    assert spaced.options.rollback_alarms == ["high-5xx", "high-latency"]
    env = {"CLOUDML_AWS_ROLLBACK_ALARMS": '["with,comma", "other"]'}
    assert resolve(provider="aws", environ=env).options.rollback_alarms == ["with,comma", "other"]
    assert cloudml.get_deployer("aws", rollback_alarms=["in-code"]).options.rollback_alarms == ["in-code"]
    with pytest.raises(ConfigError) as err:
        resolve(provider="aws", environ={"CLOUDML_AWS_ROLLBACK_ALARMS": "[unclosed"})
    assert "environment variable CLOUDML_AWS_ROLLBACK_ALARMS: not valid JSON" in err.value.message and "a,b,c" in err.value.hint


def test_map_options_take_pairs_or_json():
    class WithLabels(ProviderOptions):
        labels: dict[str, str] = Field(default_factory=dict)
        zones: list[str] | None = None

    def options(text: str, option: str = "labels"):
        return resolve_options(WithLabels, "nimbus", [OptionLayer({option: text}, labels={option: f"-o {option}=..."})])

    assert options("team=vision, cost=ml").labels == {"team": "vision", "cost": "ml"}
    assert options('{"a": "b=c"}').labels == {"a": "b=c"}
    assert options("eu-1,eu-2", "zones").zones == ["eu-1", "eu-2"]
    with pytest.raises(ConfigError, match="'novalue' is not KEY=VALUE"):
        options("novalue")
    with pytest.raises(ConfigError, match="expected a map, got JSON list"):
        options('["a"]')


def test_a_deployer_refuses_a_spec_for_another_provider(tmp_path):
    deployer = cloudml.get_deployer("local", home=tmp_path)
    foreign = DeploymentSpec(name="abc", model=tmp_path / "m.h5", provider="aws")
    for act in (deployer.deploy, deployer.update):
        with pytest.raises(ConfigError) as err:
            act(foreign)
        assert "specified for provider 'aws'; this deployer is 'local'" in err.value.message
        assert "get_deployer('aws')" in err.value.hint
    assert deployer.list() == []


def test_a_plugin_deployer_gets_the_spec_check_for_free():
    from cloudml.providers.base import Deployer

    class Nimbus(Deployer):  # a third-party provider implements `_deploy`; `deploy` checks first
        provider = "nimbus"

        def _deploy(self, spec):
            return f"deployed {spec.name}"

        get = list = predict = logs = delete = lambda self, *a, **k: None

    deployer = Nimbus()
    assert deployer.deploy(DeploymentSpec(name="abc", model="m.h5")) == "deployed abc"
    assert deployer.deploy(DeploymentSpec(name="abc", model="m.h5", provider="nimbus")) == "deployed abc"
    with pytest.raises(ConfigError, match="specified for provider 'aws'"):
        deployer.deploy(DeploymentSpec(name="abc", model="m.h5", provider="aws"))


def test_skip_preflight_sets_the_cloud_option_through_the_same_path():
    _needs_aws()
    layer = OptionLayer({"preflight": False}, labels={"preflight": "--skip-preflight"})
    assert resolve(provider="aws", environ={"CLOUDML_AWS_PREFLIGHT": "true"}, options=[layer]).options.preflight is False
    assert resolve(provider="aws", environ={"CLOUDML_AWS_PREFLIGHT": "false"}).options.preflight is False


def test_providers_name_lists_the_options_with_types_defaults_and_variables():
    _needs_aws()
    text = run_cli("providers", "aws")
    assert text.returncode == 0, text.stderr
    row = next(line for line in text.stdout.splitlines() if line.strip().startswith("rollback_alarms"))
    assert row.split() == ["rollback_alarms", "list[str]", "[]", "CLOUDML_AWS_ROLLBACK_ALARMS"]
    assert "CloudWatch alarms that roll an update back" in text.stdout and "a,b or JSON array" in text.stdout
    listed = run_cli("providers", "AWS", "--output", "JSON")
    assert listed.returncode == 0, listed.stderr
    options = {o["name"]: o for o in json.loads(listed.stdout)["options"]}
    assert options["preflight"] == {"name": "preflight", "type": "bool", "required": False, "default": True,
                                    "description": options["preflight"]["description"], "env": "CLOUDML_AWS_PREFLIGHT"}
    assert options["region"]["type"] == "str | None" and options["instance_type"]["default"] == "ml.m5.large"


def test_the_cli_names_a_stray_variable_and_takes_names_in_any_case(tmp_path):
    stray = run_cli("list", home=tmp_path, env={"CLOUDML_LOCAL_PROT": "1"})
    assert stray.returncode == 2
    assert "CLOUDML_LOCAL_PROT" in stray.stderr and "did you mean CLOUDML_LOCAL_PORT?" in stray.stderr
    listed = run_cli("list", "--provider", "Local", "--output", "Json", home=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    typo = run_cli("list", "--output", "jsn", home=tmp_path)
    assert typo.returncode == 2 and "did you mean --output json?" in typo.stderr
    wrong = run_cli("providers", "lcoal")
    assert wrong.returncode == 2 and "did you mean 'local'?" in wrong.stderr
