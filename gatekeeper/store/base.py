"""The store protocol: the system of record for releases, steps, approvals and audit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

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
