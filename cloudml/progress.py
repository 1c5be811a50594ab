"""Progress reporting for long waits, kept out of provider logic.

Providers call `progress.step("...")` around every wait; the CLI plugs in a spinner with elapsed
time, the Python API defaults to silence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Progress:
    """Silent progress; subclasses show it."""

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[Progress]:
        yield self

    def update(self, message: str) -> None:
        """Replace the message of the current step (for example with a status from the cloud)."""

    def note(self, message: str) -> None:
        """A one-off line worth keeping on screen."""


SILENT = Progress()
