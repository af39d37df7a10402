"""The root Typer app the commands register on, and the exit codes they share.

The command modules import this module, never ``main``: ``main`` imports them.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gatekeeper",
    help="Release gatekeeper: progressive delivery with metric gates and automatic rollback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_PROMOTED = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_ROLLED_BACK = 3
EXIT_HELD = 4
