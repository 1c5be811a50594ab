"""What can go wrong serving a prediction, in the data plane's terms.

These know no HTTP: the request parsers, the model and the batcher raise them, and each protocol
adapter maps them to its own answer (the HTTP layer's table is in cloudml.serving.http.responses).
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """A request that cannot be answered with a prediction; `message` says why, for the caller."""

    def __init__(self, message: str, *, expected: Any = None):
        super().__init__(message)
        self.message = message
        self.expected = expected  # what the model takes, when the mistake is about its inputs


class InvalidInput(ServingError):
    """The request does not fit the model's signature (or is not valid JSON, CSV, ...)."""


class ModelRejected(InvalidInput):
    """Values the signature allows but the model refuses (an out-of-vocabulary token id, say)."""


class UnsupportedFormat(ServingError):
    """The request comes in a format this endpoint does not read."""


class UnacceptableFormat(ServingError):
    """The caller accepts no answer format this endpoint writes."""


class PayloadTooLarge(ServingError):
    """The request is bigger than the server accepts."""


class ModelNotFound(ServingError):
    """The request names a model or version this server does not serve."""


class NotReady(ServingError):
    """The model is still loading."""


class Overloaded(ServingError):
    """The queue of requests waiting for the model is full."""


class DeadlineExceeded(ServingError):
    """The request waited past its deadline for a model call, so it was not run."""


class CallerGone(ServingError):
    """The caller went away before its answer was ready; nobody reads this."""
