"""The aws provider finds its region the way the AWS SDKs document it, AWS_REGION included."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_aws_region_alone_is_enough(aws_emulator, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))  # no profile region to fall back on
    result = run_cli("status", "no-such-model", "--provider", "aws", "--output", "json", home=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "eu-west-3" in json.loads(result.stdout)["message"]


def test_no_region_at_all_names_every_way_to_set_one(aws_emulator, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    result = run_cli("status", "no-such-model", "--provider", "aws", "--output", "json", home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert error["message"] == "no AWS region configured"
    assert "AWS_REGION" in error["hint"] and "-o region=" in error["hint"]
