"""/api/v1/releases: submit, list, read, approve, reject, abort, retry, roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response

from gatekeeper.domain.release import Phase

from .deps import PrincipalDep, ServiceDep, storable
from .models import (
    AbortIn,
    CommentIn,
    ErrorOut,
    ReleaseDetailOut,
    ReleaseListOut,
    ReleaseOut,
    RollbackIn,
)

router = APIRouter(prefix="/api/v1", tags=["releases"])

RELEASE_ID = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,299}$"
STEP = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

ReleaseId = Annotated[str, Path(pattern=RELEASE_ID, description="e.g. shop-production-v2")]
StepName = Annotated[str, Path(pattern=STEP, description="an approval step, e.g. approve-promote")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not JSON."},
    401: {"model": ErrorOut, "description": "No valid bearer token."},
    403: {"model": ErrorOut, "description": "The token's roles do not allow it; names the role."},
    404: {"model": ErrorOut, "description": "No such release or step."},
    409: {"model": ErrorOut, "description": "A conflict with the release's state."},
    422: {"model": ErrorOut, "description": "The request is not valid; names the field."},
    503: {"model": ErrorOut, "description": "The store or the OIDC issuer is unavailable."},
}

SPEC_EXAMPLE = {
    "app": "shop",
    "environment": "production",
    "version": "v2",
    "image": "registry.example/shop:v2",
    "stable": {"version": "v1", "image": "registry.example/shop:v1"},
    "strategy": {"type": "canary", "steps": [10, 50, 100], "analysis": "5m"},
    "approvals": ["promote"],
    "target": {"type": "kubernetes", "namespace": "shop"},
}


def _detail(view: object, status: int = 200, location: str | None = None) -> Response:
    """The release as JSON, serialised once (the route's response_model documents it)."""
    body = ReleaseDetailOut.model_validate(view, from_attributes=True).model_dump_json()
    headers = {"Location": location} if location else None
    return Response(body, status_code=status, headers=headers, media_type="application/json")


@router.post(
    "/releases",
    status_code=201,
    response_model=ReleaseDetailOut,
    responses={200: {"model": ReleaseDetailOut, "description": "Submitted before."}, **_ERRORS},
    summary="Submit a release",
)
def submit(
    svc: ServiceDep,
    who: PrincipalDep,
    spec: Annotated[
        dict[str, Any],
        Body(
            description="The release spec (README: release spec reference).",
            examples=[SPEC_EXAMPLE],
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="The same key (per principal) returns the same release, never two.",
        ),
    ] = None,
) -> Response:
    """Queue a release: 201 when created, 200 with the same release when this key (or this
    very spec) was submitted before; 409 when the key or the release id was used with
    another spec."""
    storable(spec, "release")
    view, created = svc.releases.submit(who, spec, idempotency_key)
    return _detail(view, 201 if created else 200, f"/api/v1/releases/{view.release_id}")


@router.get("/releases", response_model=ReleaseListOut, responses=_ERRORS, summary="List releases")
def list_releases(
    svc: ServiceDep,
    who: PrincipalDep,
    app: Annotated[str | None, Query(pattern=NAME)] = None,
    environment: Annotated[str | None, Query(pattern=NAME)] = None,
    phase: Phase | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReleaseListOut:
    """Newest first."""
    found = svc.releases.find(who, app=app, environment=environment, phase=phase, limit=limit)
    return ReleaseListOut(
        releases=[ReleaseOut.model_validate(r, from_attributes=True) for r in found]
    )


@router.get(
    "/releases/{release_id}",
    response_model=ReleaseDetailOut,
    responses=_ERRORS,
    summary="A release with its steps, approvals, gate results and events",
)
def get_release(svc: ServiceDep, who: PrincipalDep, release_id: ReleaseId) -> Response:
    return _detail(svc.releases.get(who, release_id))


@router.post(
    "/releases/{release_id}/steps/{step}/approve",
    response_model=ReleaseDetailOut,
    responses=_ERRORS,
    summary="Approve an approval step",
)
def approve(
    svc: ServiceDep, who: PrincipalDep, release_id: ReleaseId, step: StepName, body: CommentIn
) -> Response:
    """Four eyes: the submitter may not. An expedited release's first approval
    (approve-expedited) needs engineering-lead or cto."""
    return _detail(svc.releases.approve(who, release_id, step, body.comment))


@router.post(
    "/releases/{release_id}/steps/{step}/reject",
    response_model=ReleaseDetailOut,
    responses=_ERRORS,
    summary="Reject an approval step: the release is stopped and rolled back",
)
def reject(
    svc: ServiceDep, who: PrincipalDep, release_id: ReleaseId, step: StepName, body: CommentIn
) -> Response:
    return _detail(svc.releases.reject(who, release_id, step, body.comment))


@router.post(
    "/releases/{release_id}/abort",
    response_model=ReleaseDetailOut,
    responses=_ERRORS,
    summary="Abort: all traffic back to stable",
)
def abort(svc: ServiceDep, who: PrincipalDep, release_id: ReleaseId, body: AbortIn) -> Response:
    return _detail(svc.releases.abort(who, release_id, body.reason))


@router.post(
    "/releases/{release_id}/retry",
    response_model=ReleaseDetailOut,
    responses=_ERRORS,
    summary="Drive a stalled release again from the step it stopped at",
)
def retry(svc: ServiceDep, who: PrincipalDep, release_id: ReleaseId, body: CommentIn) -> Response:
    return _detail(svc.releases.retry(who, release_id, body.comment))


@router.post(
    "/releases/{release_id}/rollback",
    status_code=201,
    response_model=ReleaseDetailOut,
    responses={200: {"model": ReleaseDetailOut, "description": "Asked before."}, **_ERRORS},
    summary="Roll a promoted release back to the version it replaced",
)
def rollback(
    svc: ServiceDep,
    who: PrincipalDep,
    release_id: ReleaseId,
    body: RollbackIn,
) -> Response:
    """Queues a revert release (the previous version over the promoted one); 201 when
    created, 200 when it was asked before. Answers the revert release."""
    view, created = svc.releases.rollback(who, release_id, body.reason)
    return _detail(view, 201 if created else 200, f"/api/v1/releases/{view.release_id}")
