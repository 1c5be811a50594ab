"""A Python 3.11 base image made from Debian bookworm's own packages, for where no public image
can be pulled (offline machines, air-gapped CI, the test suite): a stand-in for `python:3.11-slim`.

No debootstrap (minutes of network-bound work): `apt-get download` fetches the few .deb files
python3.11 needs (the C library, OpenSSL, libffi, SQLite, zlib and the other libraries the
standard library's extension modules link, CA certificates) into a cache folder, `dpkg-deb -x`
unpacks each into a root file system, and the tree becomes one reproducible layer of an image
built from scratch. No package manager, shell tools or maintainer scripts run; what those would
have made and Python needs is made here: `/usr/bin/python3`, the CA bundle, a world-writable
`/tmp`, `/etc/passwd`. Needs a Debian (or Ubuntu) host with apt's lists for bookworm.

    python -m cloudml.images.debian 127.0.0.1:5000/library/python:3.11-slim --cache build/debs
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cloudml.errors import ConfigError
from cloudml.images.builder import BuildResult, build
from cloudml.images.layers import Entry, Layer, build_layer, entries_from_tree
from cloudml.images.oci import ImageSettings
from cloudml.images.registry import Credentials

# python3.11 and the libraries its interpreter and extension modules (ssl, ctypes, sqlite3, lzma,
# bz2, uuid, decimal, hashlib...) link, plus libstdc++ that native wheels (numpy, onnxruntime)
# need. Left out, as python:3.11-slim's users rarely miss them: readline/curses, dbm/gdbm and
# nis (Kerberos, libtirpc), which only `readline`, `curses`, `dbm` and `nis` import.
PACKAGES = (
    "libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "zlib1g", "libexpat1", "libssl3", "libffi8", "libbz2-1.0",
    "liblzma5", "libsqlite3-0", "libuuid1", "libcrypt1", "media-types", "netbase", "tzdata", "ca-certificates",
    "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal",
)  # fmt: skip
PYTHON = "/usr/bin/python3"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a package's files hold that a container never reads.
_DROP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug")
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"{name} is not installed: the offline base image is made from Debian packages",
                          hint="run this on a Debian or Ubuntu machine (apt-get and dpkg-deb), or give a base_image from a registry")
    return found


def download_debs(cache: Path, packages: Sequence[str] = PACKAGES, *, timeout: float = 600.0) -> list[Path]:
    """The .deb of each package in `cache`, downloaded with `apt-get download` only when absent."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not any(cache.glob(f"{p}_*.deb"))]
    if missing:
        done = subprocess.run([_tool("apt-get"), "download", *missing], cwd=cache, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ConfigError(f"apt-get download {' '.join(missing)} failed: {done.stderr.strip()[-1000:]}",
                              hint="run `apt-get update` (apt needs its package lists for bookworm) and check the network to the Debian mirror")
    debs = []
    for package in packages:
        found = sorted(cache.glob(f"{package}_*.deb"))
        if not found:
            raise ConfigError(f"no .deb of {package} in {cache}", hint="is the host's apt set up for Debian bookworm?")
        debs.append(found[-1])  # the newest when an older download is still cached
    return debs


def root_filesystem(debs: Sequence[Path], root: Path) -> Path:
    """Unpack `debs` into `root` and add what their maintainer scripts would have made."""
    dpkg_deb = _tool("dpkg-deb")
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        subprocess.run([dpkg_deb, "-x", str(deb), str(root)], check=True, capture_output=True)
    for folder in _DROP:
        shutil.rmtree(root / folder, ignore_errors=True)
    python = root / PYTHON.lstrip("/")
    if not python.exists():
        python.symlink_to("python3.11")
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(b"".join(c.read_bytes() for c in certs))
    # Where OpenSSL looks by default (the openssl package's links, without the package).
    ssl_dir = root / "usr/lib/ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("cert.pem", "/etc/ssl/certs/ca-certificates.crt"), ("certs", "/etc/ssl/certs")):
        if not (ssl_dir / name).is_symlink():
            (ssl_dir / name).symlink_to(target)
    return root


def base_layer(root: Path, blob_dir: Path) -> Layer:
    """The root file system as one layer; tmp/ is world-writable (sticky), as on any Debian."""
    made = [Entry("tmp", kind="dir", mode=0o1777), Entry("etc/passwd", data=_PASSWD), Entry("etc/group", data=_GROUP)]
    names = {e.path for e in made}
    entries = [e for e in entries_from_tree(root, rootfs=True) if e.path not in names] + made
    return build_layer(entries, blob_dir, comment="debian bookworm python3.11 (" + ", ".join(PACKAGES) + ")")


def python_base_image(
    target: str,
    *,
    cache: Path,
    credentials: Credentials | None = None,
    plain_http: bool | None = None,
    work_dir: Path | None = None,
) -> BuildResult:
    """Build the bookworm Python 3.11 image and push it to `target` (e.g. HOST/library/python:3.11-slim)."""
    debs = download_debs(cache)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="cloudml-rootfs-") as tmp:
        layer = base_layer(root_filesystem(debs, Path(tmp) / "root"), Path(tmp) / "blobs")
        settings = ImageSettings(env={"PATH": PATH, "LANG": "C.UTF-8"}, cmd=["python3"], user="",
                                 labels={"org.opencontainers.image.description": "Debian bookworm with Python 3.11, made by cloudml.images.debian"})
        return build(None, [layer], settings, target, target_credentials=credentials, plain_http=plain_http, work_dir=work_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudml.images.debian", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="where to push, e.g. 127.0.0.1:5000/library/python:3.11-slim")
    parser.add_argument("--cache", type=Path, default=Path("build/debs"), help="folder keeping the downloaded .deb files")
    args = parser.parse_args(argv)
    result = python_base_image(args.target, cache=args.cache)
    print(result.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
