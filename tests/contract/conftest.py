"""`target`: the contract's place to deploy to, once per provider (local and the three emulated
clouds); `cloud`: the same for the three clouds only (what only a cloud has: endpoints made by
someone else, quotas)."""

from __future__ import annotations

import pytest

from contract.targets import CLOUDS, TARGETS, Target


def _target(name: str, request: pytest.FixtureRequest, home, monkeypatch: pytest.MonkeyPatch) -> Target:
    monkeypatch.setenv("CLOUDML_HOME", str(home))  # the Python API's state, as the CLI's
    if name == "local":
        return TARGETS[name](home)
    emulator = request.getfixturevalue(f"{name}_emulator")
    if name == "azure":
        return TARGETS[name](home, emulator, request.getfixturevalue("azure_ml"))
    return TARGETS[name](home, emulator)


@pytest.fixture(params=list(TARGETS))
def target(request, home, monkeypatch) -> Target:
    return _target(request.param, request, home, monkeypatch)


@pytest.fixture(params=CLOUDS)
def cloud(request, home, monkeypatch) -> Target:
    return _target(request.param, request, home, monkeypatch)
