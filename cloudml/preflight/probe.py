"""The probe: load a packaged `model.tar.gz` the way a serving container would and answer one
request, so a model that cannot serve fails here in seconds instead of after a 15-minute
endpoint creation in the cloud. Needs no account."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cloudml.errors import ModelError


def probe_instance(signature) -> Any:
    """One instance of zeros shaped like the signature asks (unknown dimensions: 1)."""
    values = {}
    for name, spec in signature.inputs.items():
        shape = [d or 1 for d in (spec.instance_shape or [])]
        if spec.dtype == "string":
            values[name] = np.full(shape, "", dtype=object).tolist() if shape else ""
        else:
            values[name] = np.zeros(shape, dtype=spec.dtype).tolist()
    return values if len(values) > 1 else next(iter(values.values()))


def probe_archive(archive: Path) -> dict[str, Any]:
    """Unpack `archive` into a scratch folder, load it, send one instance through the request
    path the server uses, and return what came back. Raises `ModelError` when anything fails."""
    from cloudml.packaging.archive import extract_archive
    from cloudml.serving.model import ServedModel, describe_error
    from cloudml.serving.requests import BadRequest, batch_from_instances, jsonable

    scratch = Path(tempfile.mkdtemp(prefix="cloudml-preflight-"))
    try:
        extract_archive(archive, scratch)
        try:
            model = ServedModel(scratch)
            model.load()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"preflight: the packaged model does not load: {describe_error(exc)}",
                hint="fix the model (it would fail the endpoint's health check the same way), or pass --skip-preflight to deploy anyway",
            ) from None
        instance = probe_instance(model.signature)
        try:
            batch = batch_from_instances([instance], model.signature)
            outputs: dict[str, Any] = {}
            for _, inputs in batch.groups:
                outputs = {k: jsonable(v) for k, v in model.run(inputs).items()}
        except Exception as exc:
            message = exc.message if isinstance(exc, BadRequest) else describe_error(exc)
            raise ModelError(
                f"preflight: the packaged model failed a probe request: {message}",
                hint="fix the model, or pass --skip-preflight to deploy anyway",
            ) from None
        if not _all_finite(outputs):
            raise ModelError(
                "preflight: the packaged model answered a probe request (all zeros) with NaN or infinity",
                hint="check the model's weights and preprocessing, or pass --skip-preflight to deploy anyway",
            )
        return outputs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _all_finite(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True
