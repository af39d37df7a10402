"""What a notification says: one event of one release, the same for every receiver."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gatekeeper.domain.release import Phase, ReleaseSpec


class EventKind(StrEnum):
    """The release events a receiver can be told about."""

    SUBMITTED = "submitted"
    STARTED = "started"
    STEP_COMPLETED = "step-completed"
    APPROVAL_NEEDED = "approval-needed"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    FAILED = "failed"

    @classmethod
    def ending(cls, phase: Phase) -> EventKind | None:
        """The event of a release ending in ``phase``; None for a phase that is not final."""
        return _ENDINGS.get(phase)


_ENDINGS = {
    Phase.PROMOTED: EventKind.PROMOTED,
    Phase.ROLLED_BACK: EventKind.ROLLED_BACK,
    Phase.ABORTED: EventKind.ABORTED,
    Phase.FAILED: EventKind.FAILED,
}


def _event_id() -> str:
    return uuid.uuid4().hex


class Notification(BaseModel):
    """One event of one release. ``id`` is the same on every retry, so a receiver can drop a
    delivery it already has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release_id: str
    app: str
    environment: str
    version: str
    kind: EventKind
    at: AwareDatetime
    reason: str = ""
    url: str | None = None  # where a person sees the release (the API or a dashboard)
    step: str | None = None  # the plan step of step-completed and the approval events
    by: str | None = None  # who approved, rejected or aborted
    id: str = Field(default_factory=_event_id)

    @classmethod
    def of(
        cls,
        spec: ReleaseSpec,
        kind: EventKind,
        *,
        at: datetime,
        reason: str = "",
        url: str | None = None,
        step: str | None = None,
        by: str | None = None,
    ) -> Notification:
        """The notification of ``kind`` about the release of ``spec``."""
        return cls(
            release_id=spec.release_id,
            app=spec.app,
            environment=spec.environment,
            version=spec.version,
            kind=kind,
            at=at,
            reason=reason,
            url=url,
            step=step,
            by=by,
        )

    def headline(self) -> str:
        """One line for people: ``shop/production v2 rolled back: abort: error ratio ...``."""
        what = _WORDS[self.kind]
        if self.step and self.kind in _STEP_EVENTS:
            what = f"{what} ({self.step})"
        if self.by and self.kind in (EventKind.APPROVED, EventKind.REJECTED, EventKind.ABORTED):
            what = f"{what} by {self.by}"
        line = f"{self.app}/{self.environment} {self.version} {what}"
        return f"{line}: {self.reason}" if self.reason else line


_STEP_EVENTS = (
    EventKind.STEP_COMPLETED,
    EventKind.APPROVAL_NEEDED,
    EventKind.APPROVED,
    EventKind.REJECTED,
)

_WORDS = {
    EventKind.SUBMITTED: "submitted",
    EventKind.STARTED: "started",
    EventKind.STEP_COMPLETED: "completed a step",
    EventKind.APPROVAL_NEEDED: "needs approval",
    EventKind.APPROVED: "approved",
    EventKind.REJECTED: "rejected",
    EventKind.PROMOTED: "promoted",
    EventKind.ROLLED_BACK: "rolled back",
    EventKind.ABORTED: "aborted",
    EventKind.FAILED: "failed",
}
