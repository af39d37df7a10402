"""The FastAPI application over a running service: ``create_app(service)``."""

from __future__ import annotations

from fastapi import FastAPI

from gatekeeper.engine.service.wiring import Service

from . import errors, releases, system

DESCRIPTION = """\
Release gatekeeper: CI pipelines submit releases, release managers approve, reject, abort,
retry and roll back; the controller moves traffic step by step behind metric gates.

Every `/api/v1` route needs `Authorization: Bearer TOKEN` (an API token or an OIDC JWT).
A refusal names the role that would allow it.
"""


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="gatekeeper",
        version="1",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    app.include_router(system.router)
    app.include_router(releases.router)
    return app
