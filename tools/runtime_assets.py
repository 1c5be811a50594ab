"""Fetch, once, what the runtime-image tests build from, so the tests themselves run offline:
the linux/amd64 CPython 3.11 wheels of the ONNX runtime image (build/wheelhouse), those of the
TensorFlow runtime image for the TensorFlow installed here (build/wheelhouse-tf), and the Debian
bookworm .debs of the offline Python base (build/debs).

    python tools/runtime_assets.py [--wheelhouse build/wheelhouse] [--tf-wheelhouse build/wheelhouse-tf] [--debs build/debs]

Idempotent: a stamp in the wheelhouse records the requirements it was filled for; when they are
unchanged and the .debs are cached, nothing is fetched.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudml.images import debian, runtime, wheels  # noqa: E402

STAMP = ".requirements"


def fill_wheelhouse(house: Path, backend: str = "onnx") -> bool:
    """True when it had to download."""
    pins = runtime.requirements(backend, runtime.default_version(backend))
    wanted = "\n".join(pins) + "\n"
    stamp = house / STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return False
    wheels.resolve_wheels(pins, house)
    stamp.write_text(wanted)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "build/wheelhouse")
    parser.add_argument("--tf-wheelhouse", type=Path, default=ROOT / "build/wheelhouse-tf")
    parser.add_argument("--debs", type=Path, default=ROOT / "build/debs")
    args = parser.parse_args()
    start = time.monotonic()
    fetched = fill_wheelhouse(args.wheelhouse)
    fetched = fill_wheelhouse(args.tf_wheelhouse, "tensorflow") or fetched
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        debian.download_debs(args.debs)
    else:  # not Debian: the tests that need the offline base skip, saying why
        print(f"no apt-get/dpkg-deb here: {args.debs} not filled, the runtime image's container test will skip", file=sys.stderr)
    state = "fetched" if fetched else "cached"
    print(f"runtime image assets in {args.wheelhouse}, {args.tf_wheelhouse} and {args.debs} ({state}, {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
