"""`gatekeeper audit verify | list | head`: the hash-chained audit log.

Exit codes of `audit verify`: 0 the chain is intact, 6 it is broken (the message names
the entry's seq and what is wrong with it), 2 invalid input (a bad anchor), 1 an error
(the store cannot be read).
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .root import EXIT_ERROR, EXIT_INVALID
from .text import lit, print_problem, styled

# Distinct from every code of `gatekeeper run` and `step run`: scripts and alerts act on it.
EXIT_AUDIT_BROKEN = 6

audit_app = typer.Typer(
    help="The audit log: every action, chained by hashes; verify it, list it.",
    no_args_is_help=True,
)


def _fail(e: GatekeeperError) -> typer.Exit:
    if isinstance(e, InvalidInput):
        print_problem(Console(stderr=True), "invalid input", e)
        return typer.Exit(EXIT_INVALID)
    print_problem(Console(stderr=True), "error", e)
    return typer.Exit(EXIT_ERROR)


@audit_app.command("verify")
def verify_cmd(
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    anchor: str | None = typer.Option(
        None,
        "--anchor",
        help="SEQ:HASH exported earlier by `gatekeeper audit head`: that entry must still be "
        "there with that hash (catches deleted tail entries and a recomputed chain).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Walk the chain. Exit 0 intact, 6 broken (naming the entry), 2 invalid, 1 error."""
    from gatekeeper.engine.audit import report_json, verify_at

    try:
        report = verify_at(db, anchor)
    except GatekeeperError as e:
        raise _fail(e) from e
    if as_json:
        json.dump(report_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif report.problem is None:
        Console().print(
            f"{styled('green', 'audit log intact')}: {report.entries:,} entries, "
            f"head {lit(report.end)}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        problem = report.problem
        print_problem(
            Console(stderr=True),
            f"audit chain broken at entry {problem.seq} ({problem.kind})",
            problem.message,
        )
    raise typer.Exit(0 if report.ok else EXIT_AUDIT_BROKEN)


@audit_app.command("list")
def list_cmd(
    release: str | None = typer.Option(None, "--release", help="Only this release's entries."),
    after: int = typer.Option(0, "--after", min=0, help="Only entries after this seq."),
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many entries."),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """Audit entries, oldest first."""
    from gatekeeper.engine.audit import entry_json, list_at

    try:
        found = list_at(db, release, after_seq=after, limit=limit)
    except GatekeeperError as e:
        raise _fail(e) from e
    if as_json:
        json.dump([entry_json(e) for e in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    table = Table()
    for col in ("seq", "at", "actor", "action", "release", "detail"):
        table.add_column(col, overflow="fold")
    for entry in found:
        detail = json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)
        table.add_row(
            str(entry.seq),
            lit(entry.at.isoformat(timespec="seconds").replace("+00:00", "Z")),
            lit(entry.actor),
            lit(entry.action),
            lit(entry.release_id or ""),
            lit(detail),
        )
    Console().print(table)


@audit_app.command("head")
def head_cmd(
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
) -> None:
    """Print the chain's head as SEQ:HASH, to keep elsewhere and pass to `verify --anchor`."""
    from gatekeeper.engine.audit import head_at

    try:
        found = head_at(db)
    except GatekeeperError as e:
        raise _fail(e) from e
    sys.stdout.write(f"{found}\n")
