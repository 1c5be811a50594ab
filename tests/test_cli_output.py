"""What scripts and people read from the CLI: `--output json` on every path (usage errors,
crashes and Ctrl-C included), log lines without TensorFlow's start-up noise, help texts, and
the README's exit-code table. No model is trained: a plug-in provider plays the cloud."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, run_cli

# What TensorFlow prints when a serving process starts (copied from a real server log).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796161161.932751   26702 port.cc:153] oneDNN custom operations are on. You may see slightly different "
    "numerical results due to floating-point round-off errors from different computation orders. To turn them off, set "
    "the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796161180.628559   26948 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available "
    "CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
]
USEFUL = "ValueError: the model's input layer expects 4 features"

PLUGIN = textwrap.dedent("""
    import time
    from datetime import datetime, timezone

    from cloudml import Deployer, Deployment, DeploymentStatus
    from cloudml.errors import DeployFailed, DeploymentNotFound, PredictionRejected

    NOISE = {noise!r}
    USEFUL = {useful!r}

    class ScriptedDeployer(Deployer):
        '''A cloud with one deployment, `asleep`, whose server is gone.'''

        provider = "scripted"

        def _deploy(self, spec):
            raise DeployFailed("the new server never became healthy", hint="the previous version keeps serving",
                               details="\\n".join(NOISE + [USEFUL]))

        def get(self, name):
            if name != "asleep":
                raise DeploymentNotFound(f"no scripted deployment named {{name!r}}", hint="see `cloudml list`")
            now = datetime(2026, 1, 1, tzinfo=timezone.utc)
            return Deployment(name=name, provider="scripted", status=DeploymentStatus.DEAD, created_at=now, updated_at=now)

        def list(self):
            raise RuntimeError("the scripted cloud fell over")

        def predict(self, name, *, instances, parameters=None):
            raise PredictionRejected("expected 4 features per instance, got 3", status_code=400)

        def logs(self, name, *, tail=100, follow=False):
            self.get(name)
            yield from NOISE
            yield USEFUL
            while follow:
                time.sleep(0.05)

        def delete(self, name, *, purge=False):
            return False
""").format(noise=NOISE, useful=USEFUL)


@pytest.fixture()
def scripted(tmp_path) -> dict[str, str]:
    """The environment that installs the `scripted` provider (and `broken`, whose class is missing)."""
    site = tmp_path / "site"
    (site / "scripted_cloud").mkdir(parents=True)
    (site / "scripted_cloud" / "__init__.py").write_text(PLUGIN)
    dist = site / "scripted_cloud-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scripted-cloud\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cloudml.providers]\nscripted = scripted_cloud:ScriptedDeployer\n"
                                           "broken = scripted_cloud:NoSuchDeployer\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}


def one_json_error(result: subprocess.CompletedProcess, code: int) -> dict:
    """stdout holds exactly one JSON error object, on one line, with the exit code it exited with."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body = json.loads(lines[0])
    assert {"error", "message", "hint", "exit_code"} <= set(body), body
    assert body["exit_code"] == code
    return body


@pytest.mark.parametrize("args, fragment", [
    (["list", "--bogus"], "No such option: --bogus"),
    (["package"], "Missing argument"),
    (["logs", "ghost", "--tail", "many"], "--tail"),
    (["deplyo"], "No such command 'deplyo'"),
    (["emulator", "gpc"], "No such command 'gpc'"),
])
def test_usage_errors_with_output_json_are_one_json_error_with_exit_2(args, fragment, tmp_path):
    result = run_cli(*args, "--output", "json", home=tmp_path)
    body = one_json_error(result, 2)
    assert fragment in body["message"] and "--help" in body["hint"]
    assert fragment in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragment", [(["status", "--nmae", "x"], "--nmae"), ([], "missing command"), (["emulator"], "missing command")])
def test_cloudml_output_json_in_the_environment_makes_usage_errors_json(args, fragment, tmp_path):
    body = one_json_error(run_cli(*args, home=tmp_path, env={"CLOUDML_OUTPUT": "JSON"}), 2)
    assert fragment in body["message"]


def _commands() -> list[list[str]]:
    import typer.main

    from cloudml.cli.app import app

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            return [path]
        return [p for name, sub in sorted(subcommands.items()) for p in walk(sub, path + [name])]

    return walk(typer.main.get_command(app), [])


def test_every_command_takes_output_json():
    commands = _commands()
    assert {"logs", "serve", "emulator"} <= {c[0] for c in commands}
    for command in commands:
        result = run_cli(*command, "--help", env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        assert "--output" in result.stdout, f"`cloudml {' '.join(command)}` has no --output"


def test_logs_leave_out_tensorflow_start_up_noise(scripted, tmp_path):
    result = run_cli("logs", "asleep", "--provider", "scripted", env=scripted, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == USEFUL + "\n"


def test_logs_with_output_json_print_one_object_per_line(scripted, tmp_path):
    result = run_cli("logs", "asleep", "--provider", "scripted", "--output", "json", env=scripted, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"deployment": "asleep", "line": USEFUL}]


def test_failed_deploy_shows_the_servers_log_lines_not_tensorflows(scripted, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read by this provider")
    result = run_cli("deploy", model, "--name", "asleep", "--provider", "scripted", env=scripted, home=tmp_path)
    assert result.returncode == 5, result.stderr
    assert USEFUL in result.stderr
    assert not [line for line in NOISE if line[:40] in result.stderr]
    body = one_json_error(run_cli("deploy", model, "--name", "asleep", "--provider", "scripted", "--output", "json",
                                  env=scripted, home=tmp_path), 5)
    assert body["details"] == USEFUL


def test_a_crash_with_output_json_is_one_json_error_and_a_traceback(scripted, tmp_path):
    result = run_cli("list", "--provider", "scripted", "--output", "json", env=scripted, home=tmp_path)
    body = one_json_error(result, 1)
    assert body["error"] == "RuntimeError" and body["message"] == "the scripted cloud fell over"
    assert "Traceback" in result.stderr


def test_ctrl_c_on_logs_follow_exits_130_with_a_json_error(scripted, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cloudml", "logs", "asleep", "--follow", "--provider", "scripted", "--output", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, **scripted, "CLOUDML_HOME": str(tmp_path)}, cwd=tmp_path)
    try:
        assert json.loads(proc.stdout.readline()) == {"deployment": "asleep", "line": USEFUL}
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert json.loads(rest)["error"] == "Interrupted"


def test_serve_start_up_failure_with_output_json_is_one_json_error(tmp_path):
    result = run_cli("serve", tmp_path / "nothing-here.h5", "--port", "0", "--output", "json", home=tmp_path)
    body = one_json_error(result, 3)
    assert body["error"] == "ModelError" and "does not exist" in body["message"]


def test_delete_help_names_every_store_purge_deletes():
    result = run_cli("delete", "--help", env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert "S3" in text and "GCS" in text and "Azure blobs" in text


def _readme_cli_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme[readme.index("## CLI"):readme.index("## Python API")]


def test_ci_progress_lines_carry_durations_as_the_readme_says(tmp_path):
    result = run_cli("package", tmp_path / "nothing-here.h5", "--out", tmp_path / "out", home=tmp_path)
    assert result.returncode == 3
    assert re.search(r"^… packaging .*nothing-here\.h5$", result.stderr, re.M)
    assert re.search(r"^✗ packaging .*nothing-here\.h5 \(failed after \d+\.\d+s\)$", result.stderr, re.M)
    section = " ".join(_readme_cli_section().split())
    assert "timestamp" not in section and "with its duration" in section


def test_provider_names_and_output_values_are_case_insensitive_or_get_a_suggestion(tmp_path):
    result = run_cli("list", "--provider", "LOCAL", "--output", "JSON", home=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert "did you mean 'local'?" in run_cli("list", "--provider", "locl", home=tmp_path).stderr
    assert "did you mean --output json?" in run_cli("list", "--output", "jsn", home=tmp_path).stderr


def test_every_exit_code_in_the_readme_is_what_the_cli_returns(scripted, tmp_path):
    """One real case per documented code; the plug-in provider plays the cloud for 1, 5, 6, 7 and 8."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read by this provider")
    cases = {
        0: ["providers"],
        1: ["list", "--provider", "scripted"],
        2: ["list", "--bogus"],
        3: ["deploy", tmp_path / "nothing-here.h5", "--name", "abc"],
        4: ["status", "ghost"],
        5: ["deploy", model, "--name", "asleep", "--provider", "scripted"],
        6: ["predict", "asleep", "[[1, 2, 3]]", "--provider", "scripted"],
        7: ["list", "--provider", "broken"],
        8: ["status", "asleep", "--provider", "scripted"],
    }
    table = re.findall(r"^\| (\d+) \| (.+) \|$", _readme_cli_section(), re.M)
    documented = {int(code) for code, _ in table}
    assert 130 in documented and documented - {130} == set(cases), "a case per documented code (130: test_ctrl_c_...)"
    for code, args in cases.items():
        result = run_cli(*args, "--output", "json", env=scripted, home=tmp_path, cwd=tmp_path)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        body = json.loads(result.stdout)
        if code == 8:  # not a failure of the command: the deployment it reports is not serving
            assert body["status"] == "dead"
        elif code:
            assert body["exit_code"] == code


def test_emulator_with_output_json_prints_its_ready_object_and_nothing_else(tmp_path):
    pytest.importorskip("moto")
    proc = subprocess.Popen([sys.executable, "-m", "cloudml", "emulator", "aws", "--port", "0", "--no-init", "--output", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        ready = json.loads(proc.stdout.readline())
        proc.terminate()
        rest, errors = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert ready["url"].startswith("http://127.0.0.1:") and ready["env"]["AWS_ENDPOINT_URL"] == ready["url"]
    assert rest == "" and "AWS emulator listening on" in errors
    assert proc.returncode == 0
