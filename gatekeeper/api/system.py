"""Health, readiness, metrics, who am I, and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from gatekeeper.engine.service_metrics import CONTENT_TYPE

from .deps import PrincipalDep, ServiceDep
from .models import AuditOut, HealthOut, WhoAmIOut
from .releases import _ERRORS, RELEASE_ID

router = APIRouter()


@router.get("/healthz", response_model=HealthOut, tags=["system"], summary="The process answers")
async def healthz() -> HealthOut:
    # On the event loop, not a worker thread: a liveness probe is answered while every
    # worker is busy, so a loaded replica is never restarted for it.
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The store cannot be read."}},
    tags=["system"],
    summary="The service can answer (its store reads)",
)
def readyz(svc: ServiceDep) -> HealthOut | JSONResponse:
    problem = svc.ready()
    if problem is not None:
        body = HealthOut(status="unavailable", detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    tags=["system"],
    summary="The service's own metrics (Prometheus text format)",
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
def metrics(svc: ServiceDep) -> Response:
    return Response(svc.metrics.exposition(), media_type=CONTENT_TYPE)


@router.get(
    "/api/v1/whoami", response_model=WhoAmIOut, responses=_ERRORS, tags=["access"],
    summary="The principal and roles of the bearer token",
)  # fmt: skip
def whoami(who: PrincipalDep) -> WhoAmIOut:
    return WhoAmIOut(principal=who.name, roles=sorted(r.value for r in who.roles), via=who.via)


@router.get(
    "/api/v1/audit", response_model=AuditOut, responses=_ERRORS, tags=["access"],
    summary="Audit log entries in seq order (role audit-read)",
)  # fmt: skip
def audit_log(
    svc: ServiceDep,
    who: PrincipalDep,
    release: Annotated[str | None, Query(pattern=RELEASE_ID)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditOut:
    return AuditOut(entries=svc.releases.audit_entries(who, release, after, limit))
