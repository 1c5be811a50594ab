"""Container entrypoint: `<image> serve` on SageMaker, Vertex AI and Azure ML alike.

Each platform says where to listen and where the model is through its own variables. Vertex AI
gives a custom container its artifact folder as `AIP_STORAGE_URI` (a `gs://` URI) and expects the
container to fetch it; that download happens here before serving.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cloudml.serving.server import serve

log = logging.getLogger("cloudml.serving")


def _first(*names: str, default: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), default)


def download_gcs_folder(uri: str, dest: Path) -> Path:
    """Copy every object under the `gs://bucket/prefix` folder into `dest` (keeping relative paths).

    Uses google-cloud-storage, which honours STORAGE_EMULATOR_HOST (the offline GCS emulator).
    """
    # google-cloud-storage ships no py.typed, unlike the google.cloud packages mypy does read
    from google.cloud import storage  # type: ignore[attr-defined]

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    client = storage.Client(project=os.environ.get("CLOUD_ML_PROJECT_ID") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
    count = 0
    for blob in client.list_blobs(bucket_name, prefix=prefix):
        relative = blob.name[len(prefix):]
        if not relative or relative.endswith("/"):
            continue  # "folder" placeholder objects
        target = (dest / relative).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise RuntimeError(f"refusing object {blob.name!r}: it would be written outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise RuntimeError(f"no model files under {uri}")
    log.info("downloaded %d files from %s to %s", count, uri, dest)
    return dest


def _azure_model_folder(model_dir: Path) -> Path:
    """Azure ML mounts a registered folder model as AZUREML_MODEL_DIR/<folder name>/: serve the
    one folder inside when that is all there is."""
    try:
        entries = [e for e in model_dir.iterdir() if not e.name.startswith(".")]
    except OSError:
        return model_dir
    if len(entries) == 1 and entries[0].is_dir() and not (model_dir / "saved_model.pb").exists():
        return entries[0]
    return model_dir


def main() -> int:
    port = int(_first("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "PORT", default="8080"))
    model_dir = Path(_first("CLOUDML_MODEL_DIR", "AZUREML_MODEL_DIR", default="/opt/ml/model"))
    if os.environ.get("AZUREML_MODEL_DIR") and not os.environ.get("CLOUDML_MODEL_DIR"):
        model_dir = _azure_model_folder(model_dir)
    storage_uri = os.environ.get("AIP_STORAGE_URI", "")
    if storage_uri.startswith("gs://") and not os.environ.get("CLOUDML_MODEL_DIR"):
        logging.basicConfig(level="INFO", stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        model_dir = Path(os.environ.get("CLOUDML_DOWNLOAD_DIR", "/tmp/cloudml-model"))
        try:
            download_gcs_folder(storage_uri, model_dir)
        except Exception as exc:  # noqa: BLE001 - the platform shows this line in the container log
            log.error("cannot download the model from %s: %s", storage_uri, exc)
            return 3
    return serve(
        model_dir,
        host=os.environ.get("CLOUDML_HOST", "0.0.0.0"),  # inside a container the platform routes to us
        port=port,
        max_body_bytes=int(os.environ.get("CLOUDML_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
    )


if __name__ == "__main__":
    sys.exit(main())
