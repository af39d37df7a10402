"""`gatekeeper tokens create | list | revoke`: API tokens for `gatekeeper serve`.

A token is printed once, when created; the store keeps only its hash.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .root import EXIT_ERROR, EXIT_INVALID
from .text import lit, print_problem

tokens_app = typer.Typer(
    help="API tokens for `gatekeeper serve`: each names a principal and roles.",
    no_args_is_help=True,
)

ROLES_HELP = "viewer, ci, release-manager, engineering-lead, cto, admin"


def _fail(e: GatekeeperError) -> typer.Exit:
    if isinstance(e, InvalidInput):
        print_problem(Console(stderr=True), "invalid input", e)
        return typer.Exit(EXIT_INVALID)
    print_problem(Console(stderr=True), "error", e)
    return typer.Exit(EXIT_ERROR)


def _local_actor(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        return f"local:{getpass.getuser()}"
    except (OSError, KeyError):
        return "local"


def _expires(text: str | None) -> timedelta | None:
    if text is None:
        return None
    from gatekeeper.domain.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise InvalidInput(f"--expires {text!r}: {e}") from e
    if seconds <= 0:
        raise InvalidInput(f"--expires {text!r}: must be more than 0, such as 30d or 12h")
    return timedelta(seconds=seconds)


def _when(at: datetime | None) -> str:
    return "" if at is None else at.isoformat(timespec="seconds").replace("+00:00", "Z")


@tokens_app.command("create")
def create_cmd(
    principal: str = typer.Option(..., "--principal", help="Who the token is for."),
    role: list[str] = typer.Option(..., "--role", help=f"A role (repeatable): {ROLES_HELP}."),
    expires: str | None = typer.Option(
        None, "--expires", help="Lifetime, such as 30d or 12h; without it it never expires."
    ),
    by: str | None = typer.Option(None, "--by", help="Who creates it (the audit log's actor)."),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the token and its id as JSON."),
) -> None:
    """Create a token and print it, this once."""
    from gatekeeper.engine.auth import create_token_at

    try:
        issued = create_token_at(
            db, principal, role, expires_in=_expires(expires), actor=_local_actor(by)
        )
    except GatekeeperError as e:
        raise _fail(e) from e
    record = issued.record
    if as_json:
        shown = {
            "token": issued.token,
            "id": record.token_id,
            "principal": record.principal,
            "roles": list(record.roles),
            "expires_at": _when(record.expires_at) or None,
        }
        json.dump(shown, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    sys.stdout.write(f"{issued.token}\n")
    until = f"expires {_when(record.expires_at)}" if record.expires_at else "never expires"
    Console(stderr=True).print(
        lit(
            f"token {record.token_id} for {record.principal} "
            f"({', '.join(record.roles)}), {until}; it is shown only now"
        ),
        highlight=False,
    )


@tokens_app.command("list")
def list_cmd(
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every token (never the secret): id, principal, roles, state."""
    from gatekeeper.engine.auth import list_tokens_at, token_state

    try:
        found = list_tokens_at(db)
    except GatekeeperError as e:
        raise _fail(e) from e
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "id": t.token_id,
            "principal": t.principal,
            "roles": list(t.roles),
            "state": token_state(t, now),
            "created_at": _when(t.created_at),
            "expires_at": _when(t.expires_at) or None,
            "revoked_at": _when(t.revoked_at) or None,
        }
        for t in found
    ]
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    table = Table()
    for col in ("id", "principal", "roles", "state", "created_at", "expires_at"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            lit(row["id"]),
            lit(row["principal"]),
            lit(", ".join(row["roles"])),
            lit(row["state"]),
            lit(row["created_at"]),
            lit(row["expires_at"] or ""),
        )
    Console().print(table)


@tokens_app.command("revoke")
def revoke_cmd(
    token_id: str = typer.Argument(..., help="The token's id, as `tokens list` shows it."),
    by: str | None = typer.Option(None, "--by", help="Who revokes it (the audit log's actor)."),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
) -> None:
    """Revoke a token: it is refused from now on."""
    from gatekeeper.engine.auth import revoke_token_at

    try:
        record = revoke_token_at(db, token_id, actor=_local_actor(by))
    except GatekeeperError as e:
        raise _fail(e) from e
    Console().print(
        lit(f"token {record.token_id} of {record.principal} revoked at {_when(record.revoked_at)}"),
        highlight=False,
    )
