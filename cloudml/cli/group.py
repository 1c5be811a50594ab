"""The root `cloudml` command group, where a command line's failures become JSON for scripts."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import typer
import typer.core


def json_requested(args: list[str], environ: Mapping[str, str]) -> bool:
    """Whether this command line asks for JSON (the last --output wins, else CLOUDML_OUTPUT), read
    from the raw arguments: a line click cannot parse has no parsed --output to go by."""
    value = environ.get("CLOUDML_OUTPUT", "")
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--output" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--output="):
            value = arg.partition("=")[2]
    return value.strip().lower() == "json"


class CloudMLGroup(typer.core.TyperGroup):
    """The `cloudml` command. For scripts (`--output json`) click's own failures, the ones no
    command body sees (an unknown flag or command, a missing argument, a bad value), are also one
    JSON error object on stdout, with click's exit code (2); so are crashes (1). People get
    typer's usual messages."""

    for_scripts = False  # set on the root group while a JSON command line runs

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not json_requested(args, os.environ):
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from cloudml.cli.output import report_error, report_unexpected, report_usage_error
        from cloudml.errors import CloudMLError, Interrupted

        self.for_scripts = True
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's click: usage errors and the like
            code = report_usage_error(exc, as_json=True)
        except CloudMLError as exc:
            report_error(exc, as_json=True)
            code = exc.exit_code
        except typer.Abort:
            interrupted = Interrupted("aborted", hint="run the command again to finish it")
            report_error(interrupted, as_json=True)
            code = interrupted.exit_code
        except Exception as exc:
            code = report_unexpected(exc, as_json=True)
        sys.exit(code if isinstance(code, int) else 0)

    def parse_args(self, ctx, args):
        if not args and self.no_args_is_help and getattr(ctx.find_root().command, "for_scripts", False):
            from cloudml.errors import UsageError

            # Not typer's no-args help: it would be printed on stdout, which is the JSON's.
            raise UsageError("missing command", hint=f"`{ctx.command_path} --help` lists the commands")
        return super().parse_args(ctx, args)
