"""The root Typer app the commands register on, and the exit codes they share.

The command modules import this module, never ``main``: ``main`` imports them.
"""

from __future__ import annotations

import typer

from gatekeeper.domain.exits import Exit

app = typer.Typer(
    name="gatekeeper",
    help="Release gatekeeper: progressive delivery with metric gates and automatic rollback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The codes are written once, in the domain; these names are the CLI's.
EXIT_PROMOTED = Exit.PROMOTED
EXIT_ERROR = Exit.ERROR
EXIT_INVALID = Exit.INVALID
EXIT_ROLLED_BACK = Exit.ROLLED_BACK
EXIT_HELD = Exit.STOPPED
