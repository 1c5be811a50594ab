"""The emulators' container engine: an endpoint whose image lives in the emulator's own registry
runs that image as a real container (podman, or docker), the way the cloud runs it.

One `ContainerHost` per emulator. It decides, per image, whether a container can run it (the
image is in this emulator's registry and an engine is present; otherwise `why_not` says why and
the hosting serves with the host's cloudml runtime instead), builds the `run` command line (the
credentials the emulator mints for itself from its own registry auth, the host network, the
cloud's environment and mounts), stops containers by name and, when the emulator shuts down,
removes every container it started and the images it pulled (they name the emulator's loopback
registry, which goes away with it).

Configuration, read once when the emulator starts:
  CLOUDML_CONTAINER_ENGINE   podman | docker | none (default: podman when on PATH, else docker)
  CLOUDML_PODMAN_FLAGS       the engine's global flags (e.g. `--runtime /usr/sbin/runc`)
  CLOUDML_PODMAN_RUN_FLAGS   extra `run` flags (e.g. `--ulimit nofile=1024:4096`)
A user's podman or docker needs none of the flags; both default to empty.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudml.emulators.registry import LocalRegistry

ENGINE_VAR = "CLOUDML_CONTAINER_ENGINE"
FLAGS_VAR = "CLOUDML_PODMAN_FLAGS"
RUN_FLAGS_VAR = "CLOUDML_PODMAN_RUN_FLAGS"
ENGINES = ("podman", "docker")
STOP_SECONDS = 5
# (username, password) for this emulator's registry, minted by its own auth; None: anonymous.
Credentials = Callable[[], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Engine:
    name: str  # podman | docker
    binary: str
    flags: tuple[str, ...] = ()
    run_flags: tuple[str, ...] = ()

    def cli(self, *args: str) -> list[str]:
        return [self.binary, *self.flags, *args]


def find_engine(environ: Mapping[str, str] = os.environ) -> tuple[Engine | None, str]:
    """The engine `environ` asks for (or the one on PATH), or None and why there is none."""
    wanted = environ.get(ENGINE_VAR, "").strip()
    flags = tuple(shlex.split(environ.get(FLAGS_VAR, "")))
    run_flags = tuple(shlex.split(environ.get(RUN_FLAGS_VAR, "")))
    if wanted.lower() == "none":
        return None, f"no container engine ({ENGINE_VAR}=none)"
    if wanted and Path(wanted).name not in ENGINES:
        return None, f"no container engine: {ENGINE_VAR}={wanted!r} is not podman, docker or none"
    for name in [wanted] if wanted else ENGINES:
        binary = shutil.which(name)
        if binary is not None:
            return Engine(Path(name).name, binary, flags, run_flags), ""
    return None, f"no container engine ({wanted or 'podman/docker'}) found on PATH"


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass
class RunSpec:
    """How the cloud starts its container: the arguments after the image, its environment, mounts."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)


def readable(path: Path) -> Path:
    """chmod a+rX under `path`: the image's user (10001) must read what is mounted."""
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        item.chmod(mode | (0o555 if item.is_dir() or mode & 0o111 else 0o444))
    return path


class ContainerHost:
    """Runs images of one emulator's registry as containers (see the module docstring)."""

    def __init__(self, registry: LocalRegistry, *, credentials: Credentials, environ: Mapping[str, str] = os.environ):
        self.registry = registry
        self.credentials = credentials
        self.engine, self._no_engine = find_engine(environ)
        self.prefix = f"cloudml-emu-{secrets.token_hex(3)}-"
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._images: set[str] = set()
        if self.engine is None and environ.get(ENGINE_VAR):
            print(f"warning: {self._no_engine}; endpoints serve with the host's cloudml runtime", file=sys.stderr, flush=True)

    def why_not(self, image: str) -> str | None:
        """None when `image` runs in a container here; otherwise the container log's line why not."""
        if not self.registry.running or not image.startswith(f"{self.registry.host}/"):
            return f"cloudml emulator: image {image} is not in this emulator's registry; serving with the host's cloudml runtime instead"
        if self.engine is None:
            return f"cloudml emulator: {self._no_engine}; serving image {image} with the host's cloudml runtime instead"
        return None

    def run_command(self, name: str, image: str, spec: RunSpec, scratch: Path) -> tuple[str, list[str]]:
        """The container's name (this emulator's prefix + `name`) and the `ENGINE run` of `image` in
        the foreground (removed when it exits), pulling it first with credentials minted now; the
        auth file goes into `scratch`."""
        assert self.engine is not None, "why_not() first"
        engine = self.engine
        name = self.prefix + re.sub(r"[^a-zA-Z0-9_.-]", "-", name)
        run = ["run", "--rm", "--name", name, "--quiet", "--pull", "missing", "--stop-timeout", str(STOP_SECONDS)]
        if not _names_network(engine.run_flags):
            run += ["--network", "host"]  # the port the emulator assigned, the emulator's services on 127.0.0.1
        auth = self._auth_file(scratch)
        if engine.name == "podman":
            run += ["--tls-verify=false"]  # the loopback registry speaks plain HTTP
            if auth is not None:
                run += ["--authfile", str(auth)]
        run += list(engine.run_flags)
        env = {"CLOUDML_HOST": "127.0.0.1", **spec.env}  # loopback only, as the emulator's other servers
        for key, value in env.items():
            run += ["--env", f"{key}={value}"]
        for mount in spec.mounts:
            run += ["--volume", f"{mount.source}:{mount.target}{':ro' if mount.read_only else ''}"]
        with self._lock:
            self._names.add(name)
            self._images.add(image)
        return name, [*engine.cli(*run), image, *spec.args]

    def engine_env(self, scratch: Path) -> dict[str, str]:
        """The environment of the engine's own process: docker reads its credentials from DOCKER_CONFIG."""
        env = dict(os.environ)
        if self.engine is not None and self.engine.name == "docker":
            env["DOCKER_CONFIG"] = str(scratch / "engine-auth")
        return env

    def stop(self, name: str) -> None:
        """Stop container `name` (its foreground `run` then exits, and `--rm` removes it)."""
        if self.engine is None:
            return
        stopped = _quiet(self.engine.cli("stop", "-t", str(STOP_SECONDS), name), STOP_SECONDS + 30)
        if stopped:
            with self._lock:
                self._names.discard(name)  # else close() removes it

    def close(self) -> None:
        """Remove every container this emulator started and the images it pulled."""
        if self.engine is None:
            return
        with self._lock:
            names, images = sorted(self._names), sorted(self._images)
            self._names.clear()
            self._images.clear()
        if names:
            _quiet(self.engine.cli("rm", "-f", *names), STOP_SECONDS + 60)
        for image in images:
            _quiet(self.engine.cli("rmi", image), 60)  # not --force: another emulator may run the same image

    def _auth_file(self, scratch: Path) -> Path | None:
        credentials = self.credentials()
        if credentials is None:
            return None
        folder = scratch / "engine-auth"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        path = folder / "config.json"
        token = base64.b64encode(":".join(credentials).encode()).decode()
        path.write_text(json.dumps({"auths": {self.registry.host: {"auth": token}}}))
        path.chmod(0o600)
        return path


def _names_network(flags: tuple[str, ...]) -> bool:
    return any(f in ("--network", "--net") or f.startswith(("--network=", "--net=")) for f in flags)


def _quiet(command: list[str], timeout: float) -> bool:
    """Run an engine command whose output nobody reads; True when it succeeded."""
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
