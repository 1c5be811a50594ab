"""pytest fixtures for testing deployment scripts offline. Enable them in a conftest.py:

    pytest_plugins = ["cloudml.testing"]

    def test_my_deploy_script(aws_emulator):
        subprocess.run(["./deploy.sh"], check=True)   # boto3 and `cloudml -p aws` hit the emulator

Needs `pip install 'cloudml[aws-emulator]'`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from cloudml.emulators.aws import AwsEmulator


@pytest.fixture(scope="session")
def aws_emulator_session() -> Iterator["AwsEmulator"]:
    """One AWS emulator process for the whole test session."""
    from cloudml.emulators.aws import AwsEmulator

    with AwsEmulator(provisioning_delay=0.5) as emulator:
        yield emulator


@pytest.fixture
def aws_emulator(aws_emulator_session, monkeypatch) -> Iterator["AwsEmulator"]:
    """The session's AWS emulator, with this test's environment pointing boto3, the `aws`
    provider and `cloudml` subprocesses at it, and no faults left over from other tests."""
    for key, value in aws_emulator_session.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CLOUDML_AWS_POLL_INTERVAL", "0.5")
    aws_emulator_session.clear_faults()
    yield aws_emulator_session
    aws_emulator_session.clear_faults()
