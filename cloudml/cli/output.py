"""How the CLI talks to people and scripts: text or JSON on stdout, progress and errors on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape

from cloudml.errors import CloudMLError
from cloudml.progress import Progress

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class SpinnerProgress(Progress):
    """A live spinner with elapsed time on a terminal; timestamped lines otherwise (CI logs)."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self._status = None
        self._message = ""

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[Progress]:
        start = time.monotonic()
        self._message = message
        if not self.console.is_terminal:
            self.console.print(f"… {escape(message)}")
            try:
                yield self
            except BaseException:
                self.console.print(f"✗ {escape(message)} (failed after {time.monotonic() - start:.1f}s)")
                raise
            self.console.print(f"✓ {escape(message)} ({time.monotonic() - start:.1f}s)")
            return
        stop = threading.Event()
        with self.console.status(escape(message)) as status:
            self._status = status

            def tick() -> None:
                while not stop.wait(0.1):
                    status.update(f"{escape(self._message)} [dim]{time.monotonic() - start:.1f}s[/dim]")

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
            try:
                yield self
            except BaseException:
                stop.set()
                ticker.join()
                self.console.print(f"[red]✗[/red] {escape(message)} [dim](failed after {time.monotonic() - start:.1f}s)[/dim]")
                raise
            finally:
                stop.set()
                self._status = None
        self.console.print(f"[green]✓[/green] {escape(message)} [dim]({time.monotonic() - start:.1f}s)[/dim]")

    def update(self, message: str) -> None:
        self._message = message

    def note(self, message: str) -> None:
        self.console.print(escape(message))


def emit(data: Any, *, as_json: bool, text: str | None = None) -> None:
    """Print a result: JSON for scripts, `text` (or JSON when there is none) for people."""
    if as_json:
        if hasattr(data, "model_dump"):
            data = data.model_dump(mode="json")
        elif isinstance(data, list):
            data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()
    else:
        stdout.print(text if text is not None else escape(json.dumps(data, default=str)))


def report_error(exc: CloudMLError, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(exc.to_dict(), indent=2) + "\n")
    stderr.print(f"[bold red]error:[/bold red] {escape(exc.message)}")
    if exc.hint:
        stderr.print(f"[yellow]hint:[/yellow] {escape(exc.hint)}")
    if exc.details:
        stderr.print("[dim]--- log tail ---[/dim]")
        stderr.print(escape(exc.details), markup=False)
