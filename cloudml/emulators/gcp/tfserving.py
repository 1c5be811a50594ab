"""The emulator's stand-in for Vertex AI's prebuilt TensorFlow images: like them it fetches the
SavedModel folder from AIP_STORAGE_URI and serves it on AIP_HTTP_PORT. The serving is cloudml's
(`cloudml serve`, which packages a plain SavedModel first); the cloudml runtime's own entrypoint
serves only cloudml packages, as the image cloudml builds does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cloudml.serving.entrypoint import download_gcs_folder


def main() -> int:
    folder = Path(os.environ["CLOUDML_DOWNLOAD_DIR"])
    try:
        download_gcs_folder(os.environ["AIP_STORAGE_URI"], folder)
    except Exception as exc:  # noqa: BLE001 - the container log is where Vertex shows this
        print(f"cannot download the model from {os.environ.get('AIP_STORAGE_URI')}: {exc}", file=sys.stderr)
        return 3
    command = [sys.executable, "-m", "cloudml", "serve", str(folder), "--host", os.environ.get("CLOUDML_HOST", "127.0.0.1"),
               "--port", os.environ["AIP_HTTP_PORT"], "--package-dir", os.environ["CLOUDML_PACKAGE_DIR"]]
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
