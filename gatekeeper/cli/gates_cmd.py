"""`gatekeeper gates ...`: backtest gates against a past range of a Prometheus server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .root import EXIT_ERROR, EXIT_INVALID
from .text import lit, print_problem, styled

if TYPE_CHECKING:
    from gatekeeper.engine.gating import run_backtest
else:

    def run_backtest(*args: Any, **kwargs: Any) -> Any:
        # The engine's run_backtest (and the Prometheus client), loaded when a backtest runs;
        # a test may replace this name.
        from gatekeeper.engine import gating

        return gating.run_backtest(*args, **kwargs)


gates_app = typer.Typer(help="Metric gates: backtest them against history.", no_args_is_help=True)

_COLORS = {"pass": "green", "warn": "yellow", "fail": "red", "inconclusive": "blue"}


@gates_app.command("backtest")
def backtest_cmd(
    prometheus: str = typer.Option(..., "--prometheus", help="Prometheus base URL."),
    app_name: str = typer.Option(..., "--app", help="The app label of the candidate."),
    version: str = typer.Option(..., "--version", help="The candidate version."),
    baseline_version: str | None = typer.Option(None, "--baseline-version"),
    namespace: str = typer.Option("default", "--namespace"),
    gates: Path | None = typer.Option(None, "--gates", help="Gate set YAML (default: built-in)."),
    start: str = typer.Option(..., "--start", help="RFC 3339; the release is taken to start here."),
    end: str = typer.Option(..., "--end", help="RFC 3339."),
    step: str = typer.Option("30s", "--step", help="Evaluation step, e.g. 30s."),
    as_json: bool = typer.Option(False, "--json", help="Print the timeline as JSON."),
) -> None:
    """Evaluate the gates at each step of a past range: what would the controller have done?"""
    from datetime import timedelta

    from rich.progress import Progress

    from gatekeeper.domain.durations import parse_duration

    from .timeparse import parse_time

    err = Console(stderr=True)
    try:
        t0 = parse_time(start, field="--start")
        t1 = parse_time(end, field="--end")
        try:
            step_s = parse_duration(step)
        except ValueError as e:
            raise InvalidInput(f"--step: {e}") from e
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("evaluating", total=None)
            result = run_backtest(
                prometheus_url=prometheus,
                app=app_name,
                version=version,
                namespace=namespace,
                baseline_version=baseline_version,
                gates_file=gates,
                start=t0,
                end=t1,
                step=timedelta(seconds=step_s),
                progress=lambda i, n: bar.update(task, completed=i, total=n),
            )
    except InvalidInput as e:
        print_problem(err, "invalid input", e)
        raise typer.Exit(EXIT_INVALID) from e
    except GatekeeperError as e:
        print_problem(err, "error", e)
        raise typer.Exit(EXIT_ERROR) from e
    if as_json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    out = Console()
    table = Table(title=lit(f"backtest {app_name}@{version}  {start} .. {end}  step {step}"))
    for col in ("time", "gate", "value", "verdict", "reason"):
        table.add_column(col, overflow="fold")
    for row in result.to_json()["timeline"]:
        color = _COLORS.get(row["verdict"], "white")
        table.add_row(
            lit(row["time"]),
            lit(row["gate"]),
            "" if row["value"] is None else lit(row["value"]),
            styled(color, row["verdict"]),
            lit(row["reason"]),
        )
    out.print(table)
    decided = result.decided_at.isoformat() if result.decided_at else "-"
    out.print(f"decision: {styled('bold', result.decision.value)}  decided at: {lit(decided)}")
