"""pytest fixtures for testing deployment scripts offline. Enable them in a conftest.py:

    pytest_plugins = ["cloudml.testing"]

    def test_my_deploy_script(aws_emulator):
        subprocess.run(["./deploy.sh"], check=True)   # boto3 and `cloudml -p aws` hit the emulator

    def test_my_vertex_script(gcp_emulator):       # google-cloud clients and `cloudml -p gcp` hit it
        ...

    def test_my_azure_script(azure_emulator):      # DefaultAzureCredential, MLClient via
        client = azure_emulator.ml_client()         # azure_emulator.ml_client() and `cloudml -p azure`

Needs `pip install 'cloudml[aws-emulator]'` (aws), `'cloudml[gcp-emulator]'` (gcp) or
`'cloudml[azure-emulator]'` plus `npm install azurite` (azure).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from cloudml.emulators.aws import AwsEmulator
    from cloudml.emulators.azure import AzureEmulator
    from cloudml.emulators.gcp import GcpEmulator
    from cloudml.emulators.process import EmulatorProcess


Emulator = TypeVar("Emulator", bound="EmulatorProcess")


def _pointed_at(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, provider: str) -> Iterator[Emulator]:
    """The session's emulator for one test: its client environment set (for the SDK, cloudml's
    provider and `cloudml` subprocesses), quick polling, no faults left over from other tests."""
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(f"CLOUDML_{provider.upper()}_POLL_INTERVAL", "0.5")
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


@pytest.fixture(scope="session")
def aws_emulator_session() -> Iterator[AwsEmulator]:
    """One AWS emulator process for the whole test session."""
    from cloudml.emulators.aws import AwsEmulator

    with AwsEmulator(provisioning_delay=0.5) as emulator:
        yield emulator


@pytest.fixture
def aws_emulator(aws_emulator_session, monkeypatch) -> Iterator[AwsEmulator]:
    """The session's AWS emulator; boto3, the `aws` provider and `cloudml` subprocesses use it."""
    yield from _pointed_at(aws_emulator_session, monkeypatch, "aws")


@pytest.fixture(scope="session")
def gcp_emulator_session() -> Iterator[GcpEmulator]:
    """One Vertex AI + GCS emulator process for the whole test session."""
    from cloudml.emulators.gcp import GcpEmulator

    with GcpEmulator(provisioning_delay=0.3) as emulator:
        yield emulator


@pytest.fixture
def gcp_emulator(gcp_emulator_session, monkeypatch) -> Iterator[GcpEmulator]:
    """The session's GCP emulator; google-cloud clients, the `gcp` provider and `cloudml`
    subprocesses use it."""
    yield from _pointed_at(gcp_emulator_session, monkeypatch, "gcp")


@pytest.fixture(scope="session")
def azure_emulator_session() -> Iterator[AzureEmulator]:
    """One Azure ML + Azurite emulator process for the whole test session."""
    from cloudml.emulators.azure import AzureEmulator

    with AzureEmulator(provisioning_delay=0.5) as emulator:
        yield emulator


@pytest.fixture
def azure_emulator(azure_emulator_session, monkeypatch) -> Iterator[AzureEmulator]:
    """The session's Azure emulator; DefaultAzureCredential, requests (its certificate), the
    `azure` provider and `cloudml` subprocesses use it."""
    yield from _pointed_at(azure_emulator_session, monkeypatch, "azure")
