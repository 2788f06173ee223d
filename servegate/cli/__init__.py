"""servegate's command line: ``servegate deploy|rollback|status|serve|tap|demo``.

Exit codes (DESIGN.md): 0 success (for ``deploy``: promoted), 1 rejected by
validation, 2 error (bad input, infrastructure). Any :class:`ServegateError`
becomes a one-line message on stderr and exit code 2, never a traceback; with
``--json`` the same error is also one JSON object on stdout
(:func:`servegate.errors.json_error`), usage errors included, so CI reads every
command's every exit the same way.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click
import typer

from servegate.cli.app import app
from servegate.errors import ServegateError, json_error

# Each module registers its commands on `app` when imported. Heavy libraries
# (TensorFlow, Prefect, MLflow) are imported inside the commands, so that
# `servegate status` stays quick.
_COMMAND_MODULES = ("store_commands", "serve_command", "deploy_commands", "tap_command", "sync_command")

# Typer >= 0.20 ships its own copy of click (typer._click) and raises that
# copy's exceptions; catch both families so a usage error never leaks a traceback.
try:
    from typer._click import exceptions as _typer_click_exceptions
except ImportError:  # older typer: plain click all the way
    _typer_click_exceptions = click.exceptions

_EXIT = (click.exceptions.Exit, typer.Exit)
_ABORT = (click.exceptions.Abort, typer.Abort)
_USAGE = (click.ClickException, _typer_click_exceptions.ClickException)


def _register_commands() -> None:
    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(f"servegate.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"servegate.cli.{module}":
                raise


#: Help text width when stdout is not a terminal (CI logs, pipes): wide enough for every option name;
#: rich's default there (80 columns) cuts the longer ones.
_HELP_WIDTH_NOT_A_TTY = 120


def _wants_json(argv: list[str]) -> bool:
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def _usage_subject(exc: click.ClickException) -> str | None:
    """The option or command a usage error is about (``--name``, ``--bogus``), when click knows it."""
    option = getattr(exc, "option_name", None)
    if option:
        return str(option)
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None)
    return str(opts[0]) if opts else None


def _print_json_error(exc: Exception) -> None:
    data = json_error(exc)
    if isinstance(exc, _USAGE):  # click keeps its message apart from args
        data["error"].update(message=exc.format_message(), subject=_usage_subject(exc))
    click.echo(json.dumps(data, indent=2))


def _help_width() -> None:
    if not sys.stdout.isatty() and not os.environ.get("TERMINAL_WIDTH"):
        try:
            from typer import rich_utils
        except ImportError:  # typer without rich: click's own formatter, which never cuts names
            return
        rich_utils.MAX_WIDTH = _HELP_WIDTH_NOT_A_TTY


def main(argv: list[str] | None = None) -> int:
    _register_commands()
    _help_width()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        result = app(args=args, standalone_mode=False)
    except _EXIT as exc:
        return exc.exit_code
    except _ABORT:
        click.echo("aborted", err=True)
        return 2
    except _USAGE as exc:  # usage errors: bad flag, missing option
        if as_json:
            _print_json_error(exc)
        exc.show()
        return 2
    except ServegateError as exc:
        if as_json:
            _print_json_error(exc)
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
