"""Which container engine the emulators run images with, from the environment the user sets
(`CLOUDML_CONTAINER_ENGINE`, `CLOUDML_PODMAN_FLAGS`, `CLOUDML_PODMAN_RUN_FLAGS`), and why not when
there is none: the reason is the line the container log starts with."""

from __future__ import annotations

import os
import stat

from cloudml.emulators.container import find_engine


def _fake_engine(folder, name):
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_none_turns_containers_off_and_says_so():
    engine, why = find_engine({"CLOUDML_CONTAINER_ENGINE": "none", "PATH": os.environ.get("PATH", "")})
    assert engine is None and why == "no container engine (CLOUDML_CONTAINER_ENGINE=none)"


def test_an_unknown_engine_is_named_in_the_reason():
    engine, why = find_engine({"CLOUDML_CONTAINER_ENGINE": "containerd", "PATH": ""})
    assert engine is None and "CLOUDML_CONTAINER_ENGINE='containerd' is not podman, docker or none" in why


def test_podman_is_preferred_and_the_flags_come_from_the_environment(tmp_path, monkeypatch):
    _fake_engine(tmp_path, "docker")
    podman = _fake_engine(tmp_path, "podman")
    monkeypatch.setenv("PATH", str(tmp_path))
    engine, why = find_engine({"CLOUDML_PODMAN_FLAGS": "--runtime /usr/sbin/runc", "CLOUDML_PODMAN_RUN_FLAGS": "--ulimit nofile=1024:4096"})
    assert why == "" and engine is not None and engine.name == "podman" and engine.binary == str(podman)
    assert engine.cli("ps") == [str(podman), "--runtime", "/usr/sbin/runc", "ps"]
    assert engine.run_flags == ("--ulimit", "nofile=1024:4096")


def test_docker_when_it_is_the_only_engine_and_none_found_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    engine, why = find_engine({})
    assert engine is None and why == "no container engine (podman/docker) found on PATH"
    _fake_engine(tmp_path, "docker")
    engine, _ = find_engine({})
    assert engine is not None and engine.name == "docker"
