"""The API's request and response bodies (pydantic): what crosses the HTTP boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("lone surrogates (\\uD800-\\uDFFF) are not text")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommentIn(_In):
    comment: str = Field(default="", max_length=2000, description="Recorded with the action.")

    _plain = field_validator("comment")(_text)


class AbortIn(_In):
    reason: str = Field(min_length=1, max_length=2000, description="Why it is stopped.")

    _plain = field_validator("reason")(_text)


class RollbackIn(_In):
    reason: str = Field(default="", max_length=2000, description="Why it is rolled back.")

    _plain = field_validator("reason")(_text)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StepOut(_Out):
    index: int
    name: str
    kind: str
    description: str
    status: str = Field(
        description="done, running, waiting-approval, pending, or not-run (ended before it)"
    )
    completed_at: datetime | None
    roles: list[str] = Field(description="An approval step: the roles that may approve it.")


class ApprovalOut(_Out):
    step: str
    approver: str
    role: str
    at: datetime
    comment: str


class GateResultOut(_Out):
    gate: str
    verdict: str
    reason: str
    at: datetime
    value: float | None
    threshold: float | None
    window_s: float | None
    requests: float | None


class EventOut(_Out):
    at: datetime
    kind: str
    message: str
    actor: str


class ReleaseOut(_Out):
    release_id: str
    app: str
    environment: str
    version: str
    stable_version: str
    strategy: str
    executor: str
    expedited: bool
    phase: str = Field(
        description="queued, pending, running, holding, rolling_back, promoted, rolled_back, "
        "aborted or failed"
    )
    reason: str
    final: bool
    submitted_by: str | None
    created_at: datetime
    updated_at: datetime
    next_step: int
    steps_total: int
    current_step: str | None
    stalled: str | None = Field(
        description="Why the controller stopped driving it; it waits for a retry or an abort."
    )


class ReleaseDetailOut(ReleaseOut):
    expedited_reason: str | None
    spec: dict[str, Any]
    steps: list[StepOut]
    approvals: list[ApprovalOut]
    gate_results: list[GateResultOut]
    events: list[EventOut]


class ReleaseListOut(BaseModel):
    releases: list[ReleaseOut]


class WhoAmIOut(BaseModel):
    principal: str
    roles: list[str]
    via: str


class AuditOut(BaseModel):
    entries: list[dict[str, Any]]


class ErrorOut(BaseModel):
    """Every refusal: the message names the object, the value and the limit."""

    detail: str
    code: str = Field(
        description="unauthenticated, forbidden, not-found, conflict, invalid, unavailable, "
        "method-not-allowed, internal"
    )
    rule: str | None = None
    missing_roles: list[str] | None = None


class HealthOut(BaseModel):
    status: str
    detail: str | None = None
