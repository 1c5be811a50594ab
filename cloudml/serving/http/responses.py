"""JSON responses, and the one table that turns each data-plane error into an HTTP answer."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import Response

from cloudml.serving.errors import (
    CallerGone,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelRejected,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    UnacceptableFormat,
    UnsupportedFormat,
)

log = logging.getLogger("cloudml.serving")

# Error -> (status, Retry-After seconds or None). A subclass not listed takes its base's row.
# 503 + Retry-After is what SageMaker, Vertex AI and Azure ML front ends (and most clients)
# treat as "try again", where a 4xx would be passed on as the caller's mistake.
ERROR_STATUS: dict[type[ServingError], tuple[int, int | None]] = {
    InvalidInput: (400, None),
    ModelRejected: (400, None),
    ModelNotFound: (404, None),
    UnacceptableFormat: (406, None),
    PayloadTooLarge: (413, None),
    UnsupportedFormat: (415, None),
    CallerGone: (499, None),  # nobody is listening; only the access log and /metrics see it
    NotReady: (503, 5),
    Overloaded: (503, 1),
    DeadlineExceeded: (503, 1),
    ServingError: (400, None),
}


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: ServingError) -> Response:
    """Every contract's error body: `{"error": "...", "expected": {...}}` (TF Serving's, which
    SageMaker, Vertex AI and Azure ML clients read too)."""
    status, retry_after = next(ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS)
    body: dict[str, Any] = {"error": exc.message}
    if exc.expected is not None:
        body["expected"] = exc.expected
    return json_response(body, status, {"retry-after": str(retry_after)} if retry_after else None)


def internal_error(exc: BaseException, method: str, path: str) -> Response:
    log.exception("unexpected error while serving %s %s", method, path)
    return json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)
