"""`gatekeeper demo`: the whole product on one machine, in under three minutes."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from .root import EXIT_ERROR, app
from .text import lit, styled

if TYPE_CHECKING:
    from gatekeeper.engine.demo import run_demo
else:

    def run_demo(*args: Any, **kwargs: Any) -> Any:
        # The engine's run_demo, loaded when the demo runs; a test may replace this name.
        from gatekeeper.engine import demo

        return demo.run_demo(*args, **kwargs)


@app.command("demo")
def demo_cmd(
    scraper: bool = typer.Option(
        False, "--scraper", help="Use the built-in scraper even when Prometheus is installed."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run one good release (promoted) and one bad release (rolled back) on this machine."""
    from .progress import ReleaseProgress

    err = Console(stderr=True)
    result = run_demo(
        listener_for=lambda title: ReleaseProgress(title, err),
        use_prometheus=False if scraper else None,
        say=lambda line: err.print(line, highlight=False, markup=False),
    )
    if as_json:
        json.dump(
            {
                "metrics": result.metrics,
                "ok": result.ok,
                "releases": [
                    {
                        "name": r.name,
                        "release": r.outcome.release_id,
                        "expected": r.expected.value,
                        "outcome": r.outcome.phase.value,
                        "reason": r.outcome.reason,
                        "seconds": round(r.seconds, 1),
                    }
                    for r in result.runs
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        table = Table(title=lit(f"gatekeeper demo summary (metrics: {result.metrics})"))
        for col in ("release", "expected", "outcome", "time", "reason"):
            table.add_column(col, overflow="fold")
        for r in result.runs:
            color = "green" if r.as_expected else "red"
            table.add_row(
                lit(r.outcome.release_id),
                lit(r.expected.value),
                styled(color, r.outcome.phase.value),
                f"{r.seconds:.0f}s",
                lit(r.outcome.reason),
            )
        Console().print(table)
        Console().print("[green]demo passed[/green]" if result.ok else "[red]demo failed[/red]")
    if not result.ok:
        raise typer.Exit(EXIT_ERROR)
