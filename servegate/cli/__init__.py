"""servegate's command line: ``servegate deploy|rollback|status|serve|tap|demo``.

Exit codes (DESIGN.md): 0 success (for ``deploy``: promoted), 1 rejected by
validation, 2 error (bad input, infrastructure). Any :class:`ServegateError`
becomes a one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer

from servegate.cli.app import app
from servegate.errors import ServegateError

# Each module registers its commands on `app` when imported. Heavy libraries
# (TensorFlow, Prefect, MLflow) are imported inside the commands, so that
# `servegate status` stays quick.
_COMMAND_MODULES = ("store_commands", "serve_command", "deploy_commands", "tap_command")

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


def main(argv: list[str] | None = None) -> int:
    _register_commands()
    try:
        result = app(args=argv, standalone_mode=False)
    except _EXIT as exc:
        return exc.exit_code
    except _ABORT:
        click.echo("aborted", err=True)
        return 2
    except _USAGE as exc:  # usage errors: bad flag, missing option
        exc.show()
        return 2
    except ServegateError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
