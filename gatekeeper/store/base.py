"""The store protocol: the system of record for releases, steps, approvals and audit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gatekeeper.domain.fencing import Term
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult

from .audit_chain import AuditEntry, AuditHead, AuditRecord, AuditReport


@dataclass(frozen=True)
class ReleaseRecord:
    release_id: str
    app: str
    environment: str
    version: str
    stable_version: str
    strategy: str
    expedited: bool
    spec: dict[str, Any]  # the release spec as submitted (JSON-able)
    plan: dict[str, Any]  # the plan (JSON-able)
    phase: Phase
    reason: str
    created_at: datetime
    updated_at: datetime
    next_step: int = 0  # index of the first plan step not yet completed
    stopped: bool = False  # stopped by a person or the hold timeout: the rollback ends aborted
    submitted_by: str | None = None  # the principal who submitted it to the service
    stalled: str | None = None  # why the service stopped driving it, until a person retries


@dataclass(frozen=True)
class Approval:
    release_id: str
    step: str
    approver: str
    role: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class Event:
    release_id: str
    at: datetime
    kind: str  # submitted, step-started, step-completed, shift, gate, approval, rollback, ...
    message: str
    actor: str = "gatekeeper"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: never the token itself, only its SHA-256 (hex)."""

    token_id: str
    principal: str
    roles: tuple[str, ...]
    token_hash: str
    created_at: datetime
    expires_at: datetime | None = None  # None: never expires
    revoked_at: datetime | None = None  # set once, by revoke_token

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class IdempotencyKey:
    """A submission's key: the same key of the same principal names the same release."""

    principal: str
    key: str
    spec_hash: str  # SHA-256 of the submitted spec's canonical JSON


@dataclass(frozen=True)
class StepLogEntry:
    """A completed plan step, as the step log has it (one row per step, exactly once)."""

    index: int
    name: str
    outcome: str
    at: datetime


@dataclass(frozen=True)
class ReleaseBundle:
    """A release and everything recorded about it, as one read saw them."""

    record: ReleaseRecord
    steps: list[StepLogEntry]
    approvals: list[Approval]
    gate_results: list[GateResult]
    events: list[Event]


@dataclass(frozen=True)
class LeaseState:
    """A controller lease as the store keeps it: its holder, the highest epoch granted, and
    (a database lease) until when it holds."""

    name: str
    holder: str
    epoch: int
    expires_at: datetime | None
    renewed_at: datetime


class Store(Protocol):
    def create_release(self, record: ReleaseRecord) -> None:
        """Raises InvalidInput if the id exists or another release of the app+env is active."""

    def get_release(self, release_id: str) -> ReleaseRecord | None: ...

    def active_release(self, app: str, environment: str) -> ReleaseRecord | None: ...

    def list_releases(self, app: str | None = None, limit: int = 100) -> list[ReleaseRecord]: ...

    def set_phase(
        self,
        release_id: str,
        phase: Phase,
        reason: str,
        *,
        expected: Iterable[Phase] | None = None,
        stopped: bool | None = None,
    ) -> None:
        """Compare-and-set: moves the release to ``phase`` only from a phase in
        ``expected`` (any) that the phase machine allows a move from, in one statement;
        otherwise raises PhaseConflict naming the phase it is in. ``stopped`` is set
        with it when given."""

    def complete_step(self, release_id: str, index: int, name: str, outcome: str) -> None:
        """Record step ``index`` done and advance next_step to index+1, atomically."""

    def record_event(self, event: Event) -> None: ...

    def events(self, release_id: str) -> list[Event]: ...

    def record_gate_results(self, release_id: str, results: list[GateResult]) -> None: ...

    def gate_results(self, release_id: str, limit: int = 1000) -> list[GateResult]: ...

    def add_approval(self, approval: Approval) -> None: ...

    def approvals(self, release_id: str) -> list[Approval]: ...

    def save_target_state(self, release_id: str, state: dict[str, Any]) -> None: ...

    def target_state(self, release_id: str) -> dict[str, Any] | None: ...

    # API tokens

    def create_token(self, token: TokenRecord) -> None:
        """Raises InvalidInput if the id or the hash is taken already."""

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""

    def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        """Mark the token revoked at ``at`` (a second revocation keeps the first time);
        raises InvalidInput for an unknown id."""

    # The audit log, a hash chain

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append ``entry`` as the next seq, linked to the head, under a lock: two writers
        never fork the chain."""

    def audit_entries(
        self, release_id: str | None = None, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        """Entries after ``after_seq`` in seq order, at most ``limit``, of one release or all."""

    def audit_head(self) -> AuditHead:
        """The last entry's seq and hash, as the head row keeps them."""

    def verify_audit(self, anchor: AuditHead | None = None) -> AuditReport:
        """Walk the whole chain and report the first broken entry, if any."""

    def close(self) -> None: ...


class ServiceStore(Store, Protocol):
    """What `gatekeeper serve` needs beyond the Store: submissions, the queue, leases and
    fenced writes."""

    def submit_release(
        self,
        record: ReleaseRecord,
        key: IdempotencyKey | None = None,
        *,
        event: Event | None = None,
        audit: AuditEntry | None = None,
    ) -> tuple[ReleaseRecord, bool]:
        """Create ``record`` (queued), with its ``event`` and ``audit`` entry in the same
        transaction, or return the release the same key (or the same release id with the
        same spec) created before, writing nothing; True when created now. Conflict when
        the key or the id is taken with another spec."""

    def warm(self) -> int:
        """Open the connections the service will use before its first request; how many."""

    def release_bundle(self, release_id: str, gate_results: int = 200) -> ReleaseBundle | None:
        """The release with its step log, approvals, latest gate results and events, read
        in one transaction; None when it does not exist."""

    def find_releases(
        self,
        *,
        app: str | None = None,
        environment: str | None = None,
        phases: Iterable[Phase] | None = None,
        limit: int = 100,
    ) -> list[ReleaseRecord]:
        """Newest first, filtered by each given field."""

    def unfinished_releases(self) -> list[ReleaseRecord]:
        """Every queued or active release, oldest first."""

    def set_stalled(self, release_id: str, reason: str | None) -> bool:
        """Mark the release stalled with ``reason``, or clear the mark (None); False when it
        was already so."""

    def step_log(self, release_id: str) -> list[StepLogEntry]: ...

    def acquire_lease(
        self, name: str, holder: str, now: datetime, duration_s: float
    ) -> Term | None:
        """Take the lease when it is free or expired (a new term, epoch + 1), or keep it
        when ``holder`` has it; None when another holder's lease is still valid."""

    def renew_lease(self, term: Term, now: datetime, duration_s: float) -> bool:
        """Extend the lease of ``term``; False when the term is over."""

    def release_lease(self, term: Term, now: datetime) -> None:
        """Give the lease up now (it expires), so a standby takes over at once."""

    def advance_fence(self, name: str, holder: str, now: datetime) -> Term:
        """A new term on a lease kept elsewhere (Kubernetes): the epoch goes up by one."""

    def lease_state(self, name: str) -> LeaseState | None: ...

    def fenced(self, term: Term, alive: Callable[[], bool]) -> ServiceStore:
        """A view of this store whose every write checks, in its own transaction, that
        ``term`` is still the lease's current epoch, and whose every access first asks
        ``alive``; either failing raises Deposed. It shares the connections; closing it
        leaves them open."""
