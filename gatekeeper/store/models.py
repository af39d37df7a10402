"""The store's tables as typed ORM models; the migrations create them, these query them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gatekeeper.domain.release import Phase

from .types import ExactFloat, UTCDateTime

# Phases after which a release no longer holds its app+environment. The partial unique
# index below and the initial migration spell the same list; a test keeps them in step.
FINAL_PHASES: tuple[str, ...] = tuple(p.value for p in Phase if p.final)
# Phases in which a release waits and holds nothing (revision 0004 adds them to the index).
WAITING_PHASES: tuple[str, ...] = tuple(p.value for p in Phase if not p.final and not p.active)
IDLE_PHASES: tuple[str, ...] = FINAL_PHASES + WAITING_PHASES
ACTIVE_PREDICATE = "phase NOT IN ({})".format(", ".join(f"'{p}'" for p in IDLE_PHASES))

# Autoincrement ids: BIGINT on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), float: ExactFloat()}


def _release_fk() -> ForeignKey:
    return ForeignKey("releases.id", ondelete="CASCADE")


class ReleaseRow(Base):
    __tablename__ = "releases"
    __table_args__ = (
        Index("ix_releases_app_environment", "app", "environment"),
        # At most one active (non-final) release per app+environment, enforced by the database.
        Index(
            "uq_releases_active_app_environment",
            "app",
            "environment",
            unique=True,
            sqlite_where=text(ACTIVE_PREDICATE),
            postgresql_where=text(ACTIVE_PREDICATE),
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    app: Mapped[str] = mapped_column(Text)
    environment: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    stable_version: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(Text)
    expedited: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]]
    plan: Mapped[dict[str, Any]]
    phase: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    next_step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Stopped by a person or the hold timeout: a rollback then ends in "aborted".
    stopped: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Revision 0004: who submitted it through the service (four eyes), and the error that
    # stopped the service's controller from driving it (until a person retries).
    submitted_by: Mapped[str | None] = mapped_column(Text)
    stalled: Mapped[str | None] = mapped_column(Text)


class StepRow(Base):
    __tablename__ = "step_log"

    release_id: Mapped[str] = mapped_column(Text, _release_fk(), primary_key=True)
    index: Mapped[int] = mapped_column("index", Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_release_id_at", "release_id", "at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(Text, _release_fk())
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]


class GateResultRow(Base):
    __tablename__ = "gate_results"
    __table_args__ = (Index("ix_gate_results_release_id_at", "release_id", "at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(Text, _release_fk())
    at: Mapped[datetime]
    gate: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None]
    threshold: Mapped[float | None]
    window_s: Mapped[float | None]
    requests: Mapped[float | None]
    reason: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]]


class ApprovalRow(Base):
    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint(
            "release_id", "step", "approver", name="uq_approvals_release_step_approver"
        ),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(Text, _release_fk())
    step: Mapped[str] = mapped_column(Text)
    approver: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    comment: Mapped[str] = mapped_column(Text)


class TargetStateRow(Base):
    __tablename__ = "target_state"

    release_id: Mapped[str] = mapped_column(Text, _release_fk(), primary_key=True)
    state: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


# Access and audit (revision 0003)

# The audit log's seq is given by the store under the chain's lock, never by the database.
Seq = BigInteger().with_variant(Integer(), "sqlite")


class TokenRow(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    principal: Mapped[str] = mapped_column(Text)
    roles: Mapped[list[str]] = mapped_column(JSON)
    token_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_release_id", "release_id"),)

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    # No foreign key: the audit log outlives the releases it speaks of.
    release_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(Text)


class AuditHeadRow(Base):
    """One row (id 1): the chain's last seq and hash. Appends lock it, so the chain never
    forks, and verification compares the chain's end with it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Seq)
    hash: Mapped[str] = mapped_column(Text)


# The service (revision 0004)


class IdempotencyRow(Base):
    """A submission's idempotency key: the same key (per principal) gives the same release."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    release_id: Mapped[str] = mapped_column(Text, _release_fk())
    spec_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class LeaseRow(Base):
    """A controller lease and its fence: ``epoch`` is the highest term granted; a write
    under a lower epoch is refused. A database lease also keeps its expiry here."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    epoch: Mapped[int] = mapped_column(Seq)
    expires_at: Mapped[datetime | None]  # None: the lease lives elsewhere (Kubernetes)
    renewed_at: Mapped[datetime]
