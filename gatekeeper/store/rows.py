"""Rows to records and back, and the checks every write applies to JSON and times."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict

from .base import Approval, Event, ReleaseRecord
from .models import ApprovalRow, EventRow, GateResultRow, ReleaseRow


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def as_json(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-able copy of ``value``; refuses NaN/Inf and values JSON cannot hold."""
    try:
        loaded: dict[str, Any] = json.loads(dumps(dict(value)))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{what}: not storable as JSON: {e}") from e
    return loaded


def aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput(f"{what} {at.isoformat()} has no time zone; pass an aware datetime")
    return at.astimezone(UTC)


def record_of(row: ReleaseRow) -> ReleaseRecord:
    return ReleaseRecord(
        release_id=row.id,
        app=row.app,
        environment=row.environment,
        version=row.version,
        stable_version=row.stable_version,
        strategy=row.strategy,
        expedited=row.expedited,
        spec=row.spec,
        plan=row.plan,
        phase=Phase(row.phase),
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_step=row.next_step,
        stopped=row.stopped,
        submitted_by=row.submitted_by,
        stalled=row.stalled,
    )


def release_row(record: ReleaseRecord) -> ReleaseRow:
    if record.next_step < 0:
        raise InvalidInput(f"next_step {record.next_step}: must be 0 or more")
    return ReleaseRow(
        id=record.release_id,
        app=record.app,
        environment=record.environment,
        version=record.version,
        stable_version=record.stable_version,
        strategy=record.strategy,
        expedited=record.expedited,
        spec=as_json(record.spec, "spec"),
        plan=as_json(record.plan, "plan"),
        phase=Phase(record.phase).value,
        reason=record.reason,
        next_step=record.next_step,
        stopped=record.stopped,
        submitted_by=record.submitted_by,
        stalled=record.stalled,
        created_at=aware(record.created_at, "created_at"),
        updated_at=aware(record.updated_at, "updated_at"),
    )


def event_row(event: Event) -> EventRow:
    return EventRow(
        release_id=event.release_id,
        at=aware(event.at, "event at"),
        kind=event.kind,
        message=event.message,
        actor=event.actor,
        data=as_json(event.data, "event data"),
    )


def events_of(session: Session, release_id: str) -> list[Event]:
    """In time order; events with the same time in the order they were recorded."""
    query = (
        select(EventRow).where(EventRow.release_id == release_id).order_by(EventRow.at, EventRow.id)
    )
    return [
        Event(
            release_id=row.release_id,
            at=row.at,
            kind=row.kind,
            message=row.message,
            actor=row.actor,
            data=row.data,
        )
        for row in session.scalars(query)
    ]


def gate_results_of(session: Session, release_id: str, limit: int) -> list[GateResult]:
    """The latest ``limit`` results, oldest first."""
    query = (
        select(GateResultRow)
        .where(GateResultRow.release_id == release_id)
        .order_by(GateResultRow.at.desc(), GateResultRow.id.desc())
        .limit(limit)
    )
    rows = list(session.scalars(query))
    return [
        GateResult(
            gate=row.gate,
            verdict=Verdict(row.verdict),
            reason=row.reason,
            at=row.at,
            value=row.value,
            threshold=row.threshold,
            window_s=row.window_s,
            requests=row.requests,
            labels={str(k): str(v) for k, v in row.labels.items()},
        )
        for row in reversed(rows)
    ]


def approvals_of(session: Session, release_id: str) -> list[Approval]:
    query = (
        select(ApprovalRow)
        .where(ApprovalRow.release_id == release_id)
        .order_by(ApprovalRow.at, ApprovalRow.id)
    )
    return [
        Approval(
            release_id=row.release_id,
            step=row.step,
            approver=row.approver,
            role=row.role,
            at=row.at,
            comment=row.comment,
        )
        for row in session.scalars(query)
    ]
