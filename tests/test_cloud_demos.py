"""`make demo-aws|demo-gcp|demo-azure` (examples/cloud_demo.sh): each cloud's whole path offline,
the way a user tries it first: emulator, deploy, unchanged re-deploy, predict, logs, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, rows_close

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script, args", [
    ("localstack/demo.sh", []),  # the aws one, kept where the LocalStack material is
    ("examples/cloud_demo.sh", ["gcp"]),
    ("examples/cloud_demo.sh", ["azure"]),
], ids=["aws", "gcp", "azure"])
def test_cloud_demo_script_runs_the_whole_path_offline(script, args, seed_models, home, tmp_path):
    cnn = seed_models["cnn"]
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"instances": cnn.instances}))
    env = {**os.environ, "CLOUDML": str(Path(sys.executable).parent / "cloudml"), "CLOUDML_HOME": str(home),
           "AWS_EMULATOR_PORT": "0"}
    result = subprocess.run([str(REPO / script), *args, str(cnn.path), str(sample)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    predictions = json.loads(next(line for line in result.stdout.splitlines() if line.startswith('{"predictions"')))["predictions"]
    assert rows_close(predictions, cnn.reference())
    assert "unchanged: mnist-cnn" in result.stdout and "deleted mnist-cnn" in result.stdout


def test_cloud_demo_script_refuses_an_unknown_cloud():
    result = subprocess.run([str(REPO / "examples" / "cloud_demo.sh"), "nimbus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "choose aws, gcp or azure" in result.stderr
