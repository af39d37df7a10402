"""`gatekeeper workflow render`: print the Argo Workflow of a release spec (or the shared
WorkflowTemplate its pods come from), as YAML. Invalid input exits 2, like `gatekeeper plan`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from gatekeeper.domain.errors import InvalidInput

from .root import EXIT_INVALID
from .text import print_problem

workflow_app = typer.Typer(
    help="Compile releases into Argo Workflows (each pod runs `gatekeeper step run`).",
    no_args_is_help=True,
)


def _env(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name:
            raise InvalidInput(
                f"--env {v!r}: use NAME=VALUE, e.g. GATEKEEPER_DB_URL=postgresql://…"
            )
        out[name] = value
    return out


@workflow_app.command("render")
def render_cmd(
    release: Path | None = typer.Argument(
        None, help="Release spec YAML (not needed with --template)."
    ),
    template: bool = typer.Option(
        False,
        "--template",
        help="Print the WorkflowTemplate every release workflow refers to (apply it once "
        "per namespace) instead of the release's Workflow; a RELEASE given is still checked.",
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", help="Namespace of the workflow [default: default]."
    ),
    image: str | None = typer.Option(None, "--image", help="The gatekeeper's image the pods run."),
    service_account: str | None = typer.Option(
        None,
        "--service-account",
        help="Service account of the pods [default: gatekeeper-workflow].",
    ),
    env: list[str] = typer.Option(
        [],
        "--env",
        help="NAME=VALUE for every pod (repeatable), e.g. GATEKEEPER_PROMETHEUS_URL=http://…",
    ),
    env_from_secret: str | None = typer.Option(
        None,
        "--env-from-secret",
        help="A Secret whose keys become the pods' environment (e.g. GATEKEEPER_DB_URL).",
    ),
) -> None:
    """Print the Argo Workflow of a release spec as YAML (submit it with `argo submit -`)."""
    from gatekeeper.engine.workflow_render import RenderOptions, render_template, render_workflow

    try:
        options = RenderOptions(
            namespace=namespace,
            image=image,
            service_account=service_account,
            env=_env(env),
            env_from_secret=env_from_secret,
        )
        if template:
            text = render_template(options, release)
        elif release is None:
            raise InvalidInput("RELEASE: give a release spec file, or --template")
        else:
            text = render_workflow(release, options)
    except InvalidInput as e:
        print_problem(Console(stderr=True), "invalid input", e)
        raise typer.Exit(EXIT_INVALID) from e
    sys.stdout.write(text)
