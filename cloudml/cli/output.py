"""How the CLI talks to people and scripts: text or JSON on stdout, progress and errors on stderr.

With `--output json` stdout carries JSON only: the result, or for a failure of any kind (a usage
error, a cloudml error, a crash, Ctrl-C) exactly one error object on one line."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from cloudml.errors import CloudMLError, ExitCode
from cloudml.progress import Progress
from cloudml.tfnoise import clean_text

if TYPE_CHECKING:
    from rich.status import Status

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class SpinnerProgress(Progress):
    """A live spinner with elapsed time on a terminal; otherwise (CI logs) a `…` line when a step
    starts and a `✓`/`✗` line with its duration when it ends."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self._status: Status | None = None
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
    details = clean_text(exc.details)  # a server's log tail: its own lines, not TensorFlow's start-up noise
    if as_json:
        info = exc.to_dict()
        info.pop("details", None)
        write_json_line({**info, **({"details": details} if details else {})})
    stderr.print(f"[bold red]error:[/bold red] {escape(exc.message)}")
    if exc.hint:
        stderr.print(f"[yellow]hint:[/yellow] {escape(exc.hint)}")
    if details:
        stderr.print("[dim]--- log tail ---[/dim]")
        stderr.print(escape(details), markup=False)


def report_usage_error(exc: Any, *, as_json: bool) -> int:
    """A click usage error (unknown flag or command, missing argument, bad value: exit 2) as a
    cloudml UsageError; any other error of click's (a file it could not open) keeps its own code."""
    from cloudml.errors import UsageError

    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "cloudml"
    kind = UsageError if exc.exit_code == UsageError.exit_code else CloudMLError
    error = kind(exc.format_message(), hint=f"`{where} --help` lists what it takes")
    error.exit_code = exc.exit_code
    report_error(error, as_json=as_json)
    return exc.exit_code


def report_unexpected(exc: BaseException, *, as_json: bool) -> int:
    """A crash: the traceback on stderr (it is a bug to report), and for scripts its JSON summary."""
    traceback.print_exception(exc, file=sys.stderr)
    if as_json:
        write_json_line({"error": type(exc).__name__, "message": str(exc) or repr(exc),
                         "hint": "this is a bug in cloudml or a plug-in: the traceback is on stderr", "exit_code": ExitCode.UNEXPECTED})
    return ExitCode.UNEXPECTED


def write_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()
