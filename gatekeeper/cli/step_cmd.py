"""`gatekeeper step run RELEASE STEP`: one plan step alone, as an Argo pod runs it.

Exit codes (Argo's retryStrategy retries 75 only): 0 done (or done already),
2 invalid input (nothing touched), 3 a gate failed, 4 stopped (aborted, hold timed
out), 5 the step cannot reach its goal, 75 a temporary error worth retrying, 1 an
internal error. After 3, 4 or 5 the release is rolling back: `step run RELEASE
rollback` carries it out. `step run RELEASE guard` watches the abort guard beside the
steps until the release ends: 0 when it ended, 3 when the guard failed, 75 temporary.
"""

from __future__ import annotations

import typer
from rich.console import Console

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .text import lit, print_problem, styled

step_app = typer.Typer(
    help="Run one plan step of a stored release (what each Argo workflow pod runs).",
    no_args_is_help=True,
)


@step_app.command("run")
def step_run_cmd(
    release_id: str = typer.Argument(..., help="Release id, e.g. shop-production-v2."),
    step: str = typer.Argument(
        ...,
        help="Step index (0-based, see `gatekeeper plan`), step name, 'rollback', or 'guard' "
        "(the abort guard, until the release ends).",
    ),
    prometheus: str | None = typer.Option(
        None,
        "--prometheus",
        envvar="GATEKEEPER_PROMETHEUS_URL",
        help="Prometheus URL; without it the built-in scraper reads the versions' /metrics.",
    ),
    db: str | None = typer.Option(None, "--db", envvar="GATEKEEPER_DB_URL", help="Store URL."),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        help="Kubernetes target: the kubeconfig file (default: KUBECONFIG, ~/.kube/config, "
        "else the pod's in-cluster service account).",
    ),
) -> None:
    """Run exactly one step, idempotently. Exit 0 done, 3 gate failed, 4 stopped,
    5 step failed, 75 temporary (retry), 2 invalid, 1 internal error."""
    from gatekeeper.domain.exits import Exit  # with the release model: pydantic, not for --help
    from gatekeeper.engine.runner import RunOptions
    from gatekeeper.engine.single_step import run_one_step

    try:
        options = RunOptions(prometheus_url=prometheus, db_url=db, kubeconfig=kubeconfig)
        result = run_one_step(release_id, step, options)
    except InvalidInput as e:
        print_problem(Console(stderr=True), "invalid input", e)
        raise typer.Exit(Exit.INVALID) from e
    except GatekeeperError as e:
        print_problem(Console(stderr=True), "error", e)
        raise typer.Exit(Exit.ERROR) from e
    said = {
        Exit.DONE: ("done", "green"),
        Exit.ROLLED_BACK: ("gate failed", "red"),
        Exit.STOPPED: ("stopped", "yellow"),
        Exit.STEP_FAILED: ("step failed", "red"),
        Exit.TEMPORARY: ("temporary error", "yellow"),
    }
    word, color = said.get(result.code, ("error", "red"))
    # One line, unwrapped: under Argo it is the failed pod's message (FallbackToLogsOnError).
    Console(soft_wrap=True).print(f"{styled(color, word)}: {lit(result.message)}", highlight=False)
    raise typer.Exit(int(result.code))
