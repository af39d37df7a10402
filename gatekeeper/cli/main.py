"""The gatekeeper command line: a thin Typer layer over the engine.

Importing the CLI loads Typer and the command definitions only. Each command imports the
engine parts it needs when it runs, so `gatekeeper --help` or `gatekeeper plan` never
loads the store, the Prometheus client or the executor (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import sys

# Importing a command module registers its commands; the order here is the order of --help.
from . import client_cmd, demo_cmd, release_cmd, serve_cmd  # noqa: F401
from .audit_cmd import audit_app
from .client_cmd import remote_app
from .gates_cmd import gates_app
from .root import (
    EXIT_ERROR,
    EXIT_HELD,
    EXIT_INVALID,
    EXIT_PROMOTED,
    EXIT_ROLLED_BACK,
    app,
)
from .step_cmd import step_app
from .tokens_cmd import tokens_app
from .workflow_cmd import workflow_app

app.add_typer(gates_app, name="gates")
app.add_typer(step_app, name="step")
app.add_typer(workflow_app, name="workflow")
app.add_typer(audit_app, name="audit")
app.add_typer(tokens_app, name="tokens")
app.add_typer(remote_app, name="remote")

__all__ = [
    "EXIT_ERROR",
    "EXIT_HELD",
    "EXIT_INVALID",
    "EXIT_PROMOTED",
    "EXIT_ROLLED_BACK",
    "app",
    "main",
]


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except Exception as e:  # the last resort: one line, exit 1
        print(f"gatekeeper: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
