"""The Typer application object that every command module registers on.

Kept apart from ``servegate.cli.__init__`` so that command modules can import it
without importing each other.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="servegate",
    help="Get a trained TensorFlow model into TensorFlow Serving safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
