"""`gatekeeper plan`, `run`, `approve`, `abort`, `history`: releases on the embedded default.

Each command imports the engine when it runs: `plan` needs no store, `history` no gates.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .root import EXIT_ERROR, EXIT_INVALID, app
from .text import lit, print_problem, styled

if TYPE_CHECKING:
    from gatekeeper.engine.runner import run_release
else:

    def run_release(*args: Any, **kwargs: Any) -> Any:
        # The engine's run_release, loaded when a release runs; a test may replace this name.
        from gatekeeper.engine import runner

        return runner.run_release(*args, **kwargs)


def _invalid(e: InvalidInput) -> typer.Exit:
    print_problem(Console(stderr=True), "invalid input", e)
    return typer.Exit(EXIT_INVALID)


@app.command("plan")
def plan_cmd(
    release: Path = typer.Argument(..., help="Release spec YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Print the plan a release spec turns into."""
    from gatekeeper.engine.control import plan_json, plan_rows
    from gatekeeper.engine.specs import load_release_file, validate

    try:
        spec = load_release_file(release)
        plan, _ = validate(spec, release.parent)
    except InvalidInput as e:
        raise _invalid(e) from e
    if as_json:
        json.dump(plan_json(plan), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    title = f"{spec.app} {spec.stable.version} -> {spec.version}: {plan.strategy}"
    table = Table(title=lit(title + (" (expedited)" if plan.expedited else "")))
    for col in ("#", "step", "kind", "what"):
        table.add_column(col)
    for index, name, kind, text in plan_rows(plan):
        table.add_row(str(index), lit(name), lit(kind), lit(text))
    Console().print(table)


def _parse_approvals(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        role, sep, name = v.partition(":")
        if not sep or not role or not name:
            raise InvalidInput(f"--approve {v!r}: use ROLE:NAME, e.g. release-manager:alice")
        out.append((role, name))
    return out


@app.command("run")
def run_cmd(
    release: Path = typer.Argument(..., help="Release spec YAML."),
    prometheus: str | None = typer.Option(
        None,
        "--prometheus",
        envvar="GATEKEEPER_PROMETHEUS_URL",
        help="Prometheus URL; without it the built-in scraper reads the versions' /metrics.",
    ),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    approve: list[str] = typer.Option(
        [], "--approve", help="ROLE:NAME approving the steps that ROLE may approve (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a final summary object."),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        help="Kubernetes target: the kubeconfig file (default: KUBECONFIG, ~/.kube/config, "
        "else the pod's in-cluster service account).",
    ),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="local (this process runs the plan) or argo (an Argo Workflow runs it); "
        "default: the spec's `executor`, else local.",
    ),
    argo_server: str | None = typer.Option(
        None,
        "--argo-server",
        envvar="GATEKEEPER_ARGO_SERVER",
        help="Executor argo: argo-server's URL (its token: GATEKEEPER_ARGO_TOKEN[_FILE]).",
    ),
    argo_namespace: str | None = typer.Option(
        None, "--argo-namespace", help="Executor argo: the workflow's namespace (default argo)."
    ),
    workflow_image: str | None = typer.Option(
        None, "--workflow-image", help="Executor argo: the image the step pods run."
    ),
    step_env: list[str] = typer.Option(
        [], "--step-env", help="Executor argo: KEY=VALUE env for every step pod (repeatable)."
    ),
) -> None:
    """Run one release to its end. Exit 0 promoted, 3 rolled back, 4 held and stopped, 2 invalid."""
    from gatekeeper.engine.argo_settings import ArgoSettings, parse_env_pairs
    from gatekeeper.engine.runner import (
        RunOptions,
        load_release_file,
        outcome_exit_code,
        validate,
        with_executor,
    )

    from .progress import ReleaseProgress

    try:
        spec = with_executor(load_release_file(release), executor)
        validate(spec, release.parent)
        approvals = _parse_approvals(approve)
        argo = (
            ArgoSettings.resolve(
                argo_server, argo_namespace, workflow_image, parse_env_pairs(step_env)
            )
            if spec.executor == "argo"
            else None
        )
    except InvalidInput as e:
        raise _invalid(e) from e
    started = datetime.now(UTC)
    try:
        with ReleaseProgress(f"{spec.app} {spec.version}") as progress:
            outcome = run_release(
                spec,
                RunOptions(
                    prometheus_url=prometheus,
                    db_url=db,
                    approve=approvals,
                    listener=progress,
                    kubeconfig=kubeconfig,
                    argo=argo,
                ),
                release.parent,
            )
    except InvalidInput as e:
        raise _invalid(e) from e
    except GatekeeperError as e:
        print_problem(Console(stderr=True), "error", e)
        raise typer.Exit(EXIT_ERROR) from e
    code = outcome_exit_code(outcome.phase)
    if as_json:
        summary = {
            "release": outcome.release_id,
            "app": spec.app,
            "version": spec.version,
            "stable_version": spec.stable.version,
            "strategy": spec.strategy.type,
            "outcome": outcome.phase.value,
            "reason": outcome.reason,
            "exit_code": code,
            "started_at": started.isoformat().replace("+00:00", "Z"),
            "finished_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        color = {0: "green", 3: "red", 4: "yellow"}.get(code, "red")
        Console().print(
            f"{styled(color, outcome.phase.value)}: {lit(outcome.reason)}", highlight=False
        )
    raise typer.Exit(code)


@app.command("approve")
def approve_cmd(
    release_id: str = typer.Argument(..., help="Release id, e.g. shop-production-v2."),
    step: str = typer.Argument(..., help="The approval step, e.g. approve-promote."),
    by: str = typer.Option(..., "--by", help="Who approves."),
    role: str = typer.Option(
        ..., "--role", help="Their role: release-manager, engineering-lead, cto."
    ),
    comment: str = typer.Option("", "--comment"),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL"),
) -> None:
    """Approve a step of a running release (recorded in the audit trail)."""
    from gatekeeper.engine.control import approve

    try:
        approve(release_id, step, by=by, role=role, comment=comment, db_url=db)
    except InvalidInput as e:
        raise _invalid(e) from e
    Console().print(lit(f"{step} of {release_id} approved by {by} ({role})"))


@app.command("reject")
def reject_cmd(
    release_id: str = typer.Argument(..., help="Release id, e.g. shop-production-v2."),
    step: str = typer.Argument(..., help="The approval step, e.g. approve-promote."),
    by: str = typer.Option(..., "--by", help="Who rejects."),
    role: str = typer.Option(
        ..., "--role", help="Their role: release-manager, engineering-lead, cto."
    ),
    comment: str = typer.Option("", "--comment", help="Why (recorded with the rejection)."),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL"),
) -> None:
    """Reject an approval step: the release rolls back (recorded in the audit trail)."""
    from gatekeeper.engine.control import reject

    try:
        said = reject(release_id, step, by=by, role=role, comment=comment, db_url=db)
    except InvalidInput as e:
        raise _invalid(e) from e
    Console().print(lit(f"{release_id}: {said}; rolling back"))


@app.command("abort")
def abort_cmd(
    release_id: str = typer.Argument(..., help="Release id, e.g. shop-production-v2."),
    by: str = typer.Option(..., "--by", help="Who stops it."),
    reason: str = typer.Option(..., "--reason"),
    shutdown: bool = typer.Option(
        False, "--shutdown", help="Also stop the local target's router and versions."
    ),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The local target's folder."),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL"),
) -> None:
    """Stop a release: all traffic back to stable; a running `gatekeeper run` exits 4."""
    from gatekeeper.engine.control import abort_release

    try:
        said = abort_release(
            release_id, by=by, reason=reason, db_url=db, state_dir=state_dir, shutdown=shutdown
        )
    except InvalidInput as e:
        raise _invalid(e) from e
    Console().print(lit(f"{release_id}: {said}"))


@app.command("history")
def history_cmd(
    app_name: str | None = typer.Option(None, "--app"),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Past and current releases, newest first."""
    from gatekeeper.engine.history import history

    rows = history(app_name, db)
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    table = Table()
    for col in ("release", "strategy", "phase", "reason", "created_at"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            *(lit(row[col]) for col in ("release", "strategy", "phase", "reason", "created_at"))
        )
    Console().print(table)
