"""`gatekeeper serve --config FILE`: the API and, on the replica that holds the lease, the
controller. Exit 2 for a bad configuration (the message names the field), 1 for an error.

SIGTERM or SIGINT stops it in order: the HTTP server, then the controller (its releases
stay where they are and the next leader resumes them), then the lease is given up so a
standby takes over at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from gatekeeper.domain.errors import GatekeeperError, InvalidInput

from .root import EXIT_ERROR, EXIT_INVALID, app
from .text import print_problem


@app.command("serve")
def serve_cmd(
    config: Path | None = typer.Option(
        None, "--config", help="The service's YAML configuration (README: gatekeeper serve)."
    ),
    host: str | None = typer.Option(None, "--host", help="Overrides server.host."),
    port: int | None = typer.Option(None, "--port", help="Overrides server.port (0: free)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
) -> None:
    """Run the service: the /api/v1 API, the controller, /metrics, /healthz and /readyz."""
    from gatekeeper.api.app import create_app
    from gatekeeper.api.server import ApiServer
    from gatekeeper.engine.service.config import load_service_config
    from gatekeeper.engine.service.wiring import build_service

    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "httpx"):  # a line per migration step, per scrape
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    err = Console(stderr=True)
    try:
        settings = load_service_config(config)
        address = (host or settings.server.host, settings.server.port if port is None else port)
        service = build_service(settings)
        service.warm()
    except InvalidInput as e:
        print_problem(err, "invalid config", e)
        raise typer.Exit(EXIT_INVALID) from e
    except GatekeeperError as e:
        print_problem(err, "error", e)
        raise typer.Exit(EXIT_ERROR) from e
    try:
        server = ApiServer(create_app(service), *address, threads=settings.server.threads)
    except OSError as e:
        service.stop()
        print_problem(err, "error", f"cannot listen on {address[0]}:{address[1]}: {e}")
        raise typer.Exit(EXIT_ERROR) from e
    print(f"gatekeeper serve: listening on {server.url}", file=sys.stderr, flush=True)
    service.start()
    try:
        server.run()
    finally:
        service.stop()
        print("gatekeeper serve: stopped", file=sys.stderr, flush=True)
