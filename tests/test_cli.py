"""CLI behaviour that needs no model: start-up cost, providers, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import run_cli


def test_help_imports_neither_tensorflow_nor_cloud_sdks():
    code = textwrap.dedent("""
        import sys
        sys.argv = ["cloudml", "--help"]
        from cloudml.cli import main
        try:
            main()
        except SystemExit:
            pass
        heavy = [m for m in ("tensorflow", "keras", "boto3", "sagemaker", "google.cloud.aiplatform", "azure.ai.ml", "pydantic") if m in sys.modules]
        print("HEAVY", heavy, file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stderr
    assert "deploy" in result.stdout and "predict" in result.stdout


def test_providers_lists_every_builtin_with_its_state():
    result = run_cli("providers", "--output", "json")
    assert result.returncode == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) >= {"local", "aws", "gcp", "azure"}
    assert rows["local"]["state"] == "ready"


def _missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True


@pytest.mark.parametrize("provider, extra, module",
                         [("gcp", "gcp", "google.cloud.aiplatform"), ("azure", "azure", "azure.ai.ml"), ("aws", "aws", "sagemaker.core")])
def test_missing_extra_gives_the_install_line(provider, extra, module, tmp_path):
    env = {}
    if not _missing(module):
        # Installed here: hide it from the CLI process, as on a machine without the extra. (An empty
        # shadow package is not enough: namespace-package .pth files import `google` at start-up.)
        hide = tmp_path / "hide"
        hide.mkdir()
        (hide / "sitecustomize.py").write_text(textwrap.dedent(f"""
            import sys

            class HideModule:
                def find_spec(self, name, path=None, target=None):
                    if name == {module!r} or name.startswith({module!r} + "."):
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, HideModule())
        """))
        env["PYTHONPATH"] = str(hide)
    result = run_cli("list", "--provider", provider, home=tmp_path, env=env)
    assert result.returncode == 7
    assert f"pip install 'cloudml[{extra}]'" in result.stderr


def test_unknown_provider_lists_the_known_ones(tmp_path):
    result = run_cli("list", "--provider", "nimbus", home=tmp_path)
    assert result.returncode == 2
    assert "unknown provider 'nimbus'" in result.stderr and "local" in result.stderr


def test_third_party_provider_is_loaded_from_the_entry_point_group(tmp_path):
    """A plug-in registers `cloudml.providers` in its metadata; cloudml finds and runs it."""
    site = tmp_path / "site"
    package = site / "nimbus_cloud"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from datetime import datetime, timezone
        from cloudml import Deployer, Deployment, DeploymentStatus

        class NimbusDeployer(Deployer):
            provider = "nimbus"
            def _deploy(self, spec): raise NotImplementedError
            def get(self, name):
                now = datetime(2026, 1, 1, tzinfo=timezone.utc)
                return Deployment(name=name, provider="nimbus", status=DeploymentStatus.HEALTHY, created_at=now, updated_at=now)
            def list(self): return [self.get("from-plugin")]
            def predict(self, name, *, instances, parameters=None): raise NotImplementedError
            def logs(self, name, *, tail=100, follow=False): return iter(())
            def delete(self, name): return False
    """))
    dist = site / "nimbus_cloud-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nimbus-cloud\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cloudml.providers]\nnimbus = nimbus_cloud:NimbusDeployer\n")
    env = {"PYTHONPATH": str(site)}
    listed = json.loads(run_cli("providers", "--output", "json", env=env).stdout)
    assert {"name": "nimbus", "state": "ready"}.items() <= next(r for r in listed if r["name"] == "nimbus").items()
    result = run_cli("list", "--provider", "nimbus", "--output", "json", env=env, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "from-plugin"


@pytest.mark.parametrize("args, code, fragment", [
    (["deploy", "nothing-here.h5", "--name", "abc"], 3, "does not exist"),
    (["deploy", "x.h5", "--name", "Bad_Name"], 2, "not a valid deployment name"),
    (["deploy", "x.h5"], 2, "missing name"),
    (["deploy", "x.h5", "--name", "abc", "--env", "NOEQUALS"], 2, "KEY=VALUE"),
    (["deploy", "x.h5", "--name", "abc", "--min-replicas", "3", "--max-replicas", "1"], 2, "max_replicas"),
    (["deploy", "x.h5", "--name", "abc", "-o", "colour=blue"], 2, "colour"),
    (["status", "ghost"], 4, "no local deployment named 'ghost'"),
    (["predict", "ghost", "[[1]]"], 4, "no local deployment"),
    (["predict", "ghost", "not json"], 2, "not valid JSON"),
    (["predict", "ghost", '{"rows": []}'], 2, "must be a JSON list"),
    (["logs", "ghost"], 4, "no local deployment"),
    (["list", "--output", "yaml"], 2, "--output must be text or json"),
])
def test_bad_input_exits_non_zero_with_an_actionable_message(args, code, fragment, tmp_path):
    result = run_cli(*args, home=tmp_path, cwd=tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_errors_are_json_on_stdout_for_scripts(tmp_path):
    result = run_cli("status", "ghost", "--output", "json", home=tmp_path)
    assert result.returncode == 4
    body = json.loads(result.stdout)
    assert body["error"] == "DeploymentNotFound" and body["exit_code"] == 4 and "cloudml list" in body["hint"]


def test_delete_of_nothing_is_idempotent(tmp_path):
    result = run_cli("delete", "ghost", "--output", "json", home=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"name": "ghost", "deleted": False}


def test_config_file_in_working_directory_is_used(tmp_path):
    (tmp_path / "cloudml.yaml").write_text("name: from-config\nmodel: missing.h5\n")
    result = run_cli("deploy", home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 3
    assert str(tmp_path / "missing.h5") in result.stderr


def test_skip_preflight_is_refused_where_there_is_no_preflight(tmp_path):
    result = run_cli("deploy", tmp_path / "model.h5", "--name", "abc", "--skip-preflight", home=tmp_path)
    assert result.returncode == 2
    assert "--skip-preflight does not apply to provider 'local'" in result.stderr
