"""The gatekeeper command line: a thin Typer layer over the engine."""

from __future__ import annotations

import sys

import typer

from .gates_cmd import gates_app

app = typer.Typer(
    name="gatekeeper",
    help="Release gatekeeper: progressive delivery with metric gates and automatic rollback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(gates_app, name="gates")

EXIT_PROMOTED = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_ROLLED_BACK = 3
EXIT_HELD = 4


def main() -> None:
    from . import demo_cmd, release_cmd  # noqa: F401  (they register their commands)

    try:
        app()
    except SystemExit:
        raise
    except Exception as e:  # the last resort: one line, exit 1
        print(f"gatekeeper: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
