"""The dependency layer: packages installed from wheels resolved for the image's platform, never
from the host's site-packages.

Two pip steps, both told the target platform (linux/amd64, CPython 3.11, manylinux), so a host of
any OS or Python builds the same layer: `pip download --only-binary=:all:` resolves the
requirements into a wheelhouse, then `pip install --no-deps --target` installs exactly those
pinned versions from it (by name, with no index, so pip records no host path in direct_url.json).
What would differ between hosts or runs is left out: `bin/` (console scripts whose first line
names the host's Python) and bytecode (the runtime compiles what it imports).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cloudml.errors import ConfigError
from cloudml.images.layers import Layer, layer_from_tree

PYTHON_VERSION = "3.11"


def manylinux_platforms(glibc: tuple[int, int] = (2, 28), arch: str = "x86_64") -> tuple[str, ...]:
    """Every manylinux tag a system with `glibc` runs, newest first: pip takes `--platform` values
    literally (manylinux_2_28 alone would miss the many wheels tagged manylinux_2_17/manylinux2014)."""
    major, newest = glibc
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tuple(tags + [f"{name}_{arch}" for minor, name in legacy.items() if minor <= newest])


# glibc 2.28 (Debian 10 and later, RHEL 8): what python:3.11-slim (Debian 12, glibc 2.36) and older company bases run.
PLATFORMS = manylinux_platforms((2, 28))
SITE_PACKAGES = "opt/cloudml/deps"
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def _platform_args(python_version: str, platforms: Sequence[str]) -> list[str]:
    abi = "cp" + python_version.replace(".", "")
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def _pip(args: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{what} took over {timeout:.0f} s", hint="check the network to the package index, or give a wheelhouse (find_links)") from None
    if done.returncode == 0:
        return
    tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
    no_wheel = any("No matching distribution" in line or "Could not find a version" in line for line in tail)
    raise ConfigError(
        f"{what} failed: " + " ".join(tail),
        hint="that version has no wheel for linux/amd64 CPython 3.11 (manylinux); choose a version published for it"
        if no_wheel
        else "check the requirement names and the network to the package index",
        details=(done.stderr or "")[-4000:],
    )


def resolve_wheels(
    requirements: Sequence[str],
    wheelhouse: Path,
    *,
    python_version: str = PYTHON_VERSION,
    platforms: Sequence[str] = PLATFORMS,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    no_index: bool = False,
    timeout: float = 1800.0,
) -> list[Path]:
    """Download the wheels `requirements` need on the target platform into `wheelhouse` (sorted paths)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    args = ["download", "--dest", str(wheelhouse), *_platform_args(python_version, platforms)]
    args += ["--index-url", index_url] if index_url else []
    args += ["--no-index"] if no_index else []
    for link in find_links:
        args += ["--find-links", str(link)]
    _pip([*args, *requirements], f"resolving {', '.join(requirements)} for linux/amd64 (Python {python_version})", timeout)
    return sorted(wheelhouse.glob("*.whl"))


def dependency_layer(
    requirements: Sequence[str],
    blob_dir: Path,
    *,
    prefix: str = SITE_PACKAGES,
    python_version: str = PYTHON_VERSION,
    platforms: Sequence[str] = PLATFORMS,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    no_index: bool = False,
    timeout: float = 1800.0,
) -> Layer:
    """A layer holding `requirements` and their dependencies installed at `/prefix` (put it on the
    image's PYTHONPATH). The layer's comment lists the pinned wheels it was made from.

    Downloads go through pip's own cache, so a rebuild fetches nothing it fetched before."""
    with tempfile.TemporaryDirectory(prefix="cloudml-deps-") as tmp:
        # A fresh wheelhouse holds exactly what this resolution chose: those pins are what gets installed.
        wheels = resolve_wheels(
            requirements,
            Path(tmp) / "wheelhouse",
            python_version=python_version,
            platforms=platforms,
            index_url=index_url,
            find_links=find_links,
            no_index=no_index,
            timeout=timeout,
        )
        pins = sorted({f"{m['name']}=={m['version']}" for w in wheels if (m := _WHEEL.match(w.name))})
        target = Path(tmp) / "site-packages"
        args = ["install", "--no-deps", "--no-index", "--find-links", str(Path(tmp) / "wheelhouse"), "--target", str(target)]
        args += ["--no-compile", "--no-warn-script-location", *_platform_args(python_version, platforms)]
        _pip([*args, *pins], f"installing {len(pins)} wheels", timeout)
        shutil.rmtree(target / "bin", ignore_errors=True)
        for cache in list(target.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
        return layer_from_tree(target, blob_dir, prefix=prefix, comment="dependencies " + " ".join(pins))
