"""Why a model cannot be served by ONNX Runtime: raised by the converters, turned into a fallback
(or, with `--runtime onnx`, into the user's error) by the code that chooses the runtime."""

from __future__ import annotations

from cloudml.errors import ModelError


class NotConvertible(ModelError):
    """The model has no verified ONNX form; `reason` is one short line for the manifest and the CLI.

    A ModelError (exit 3), so one that nothing turns into a fallback still reads as a model error."""

    def __init__(self, reason: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(reason, hint=hint, details=details)  # details: the converter's own log, when it has one
        self.reason = reason


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line: what a reason quotes of it."""
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:300]
