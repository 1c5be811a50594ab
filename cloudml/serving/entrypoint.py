"""Container entrypoint: `<image> serve` on SageMaker, Vertex AI and Azure ML alike.

Each platform says where to listen and where the model is through its own variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cloudml.serving.server import serve


def _first(*names: str, default: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), default)


def main() -> int:
    port = int(_first("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "PORT", default="8080"))
    model_dir = Path(_first("CLOUDML_MODEL_DIR", "AZUREML_MODEL_DIR", default="/opt/ml/model"))
    return serve(
        model_dir,
        host=os.environ.get("CLOUDML_HOST", "0.0.0.0"),  # inside a container the platform routes to us
        port=port,
        max_body_bytes=int(os.environ.get("CLOUDML_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
        package_dir=Path(os.environ.get("CLOUDML_PACKAGE_DIR", "/tmp/cloudml-package")),
    )


if __name__ == "__main__":
    sys.exit(main())
