"""The SQL of `gatekeeper serve`: idempotent submissions, the queue, leases and the fence.

Leases. A row of ``leases`` per lease name holds its holder, the highest epoch granted
and (a database lease) its expiry. Taking it over is a compare-and-set on the epoch it
read, under the row's lock (``FOR UPDATE`` on PostgreSQL; SQLite's write lock, ``BEGIN
IMMEDIATE``), so two standbys never both win one term.

The fence. A fenced view's write transactions first read the lease row ``FOR SHARE``
(PostgreSQL) and go on only while its epoch is the view's term: a takeover, which updates
that row, waits for the write to commit, and every write after the takeover sees the new
epoch and is refused. On SQLite every write holds the database's write lock from its
start, which orders it before or after the takeover just the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gatekeeper.domain.errors import Conflict, InvalidInput
from gatekeeper.domain.fencing import Deposed, Term
from gatekeeper.domain.release import Phase

from . import access_sql
from .audit_chain import AuditEntry
from .base import Event, IdempotencyKey, LeaseState, ReleaseBundle, ReleaseRecord, StepLogEntry
from .models import IdempotencyRow, LeaseRow, ReleaseRow, StepRow
from .rows import (
    approvals_of,
    as_json,
    aware,
    event_row,
    events_of,
    gate_results_of,
    record_of,
    release_row,
)


@dataclass(frozen=True)
class Fence:
    """A fenced view's term, and the local check that the term has not lapsed."""

    term: Term
    alive: Callable[[], bool]

    def check(self, session: Session, *, write: bool, dialect: str) -> None:
        if not self.alive():
            raise Deposed(f"controller {self.term}: the term is over; no more reads or writes")
        if not write:
            return
        query = select(LeaseRow.holder, LeaseRow.epoch).where(LeaseRow.name == self.term.lease)
        if dialect == "postgresql":
            query = query.with_for_update(read=True)
        row = session.execute(query).first()
        if row is None or int(row.epoch) != self.term.epoch:
            now = "no lease row" if row is None else f"epoch {row.epoch} of {row.holder}"
            raise Deposed(
                f"controller {self.term}: write refused, the lease is at {now}: "
                "a newer leader took over"
            )


def _changed(session: Session, statement: Any) -> int:
    done = session.execute(statement.execution_options(synchronize_session=False))
    return cast("CursorResult[Any]", done).rowcount


def _same_spec(row: ReleaseRow, record: ReleaseRecord) -> bool:
    return row.spec == as_json(record.spec, "spec")


def _existing(
    session: Session, record: ReleaseRecord, key: IdempotencyKey | None
) -> ReleaseRecord | None:
    """The release this submission names already, or None; Conflict when the key or the
    release id was given with another spec."""
    if key is not None:
        known = session.get(IdempotencyRow, (key.principal, key.key))
        if known is not None:
            if known.spec_hash != key.spec_hash:
                raise Conflict(
                    f"idempotency key {key.key!r} of {key.principal} was used for release "
                    f"{known.release_id!r} with another spec; a new spec needs a new key"
                )
            row = session.get(ReleaseRow, known.release_id)
            if row is not None:
                return record_of(row)
    row = session.get(ReleaseRow, record.release_id)
    if row is None:
        return None
    if not _same_spec(row, record):
        raise Conflict(
            f"release {record.release_id!r} exists already ({row.phase}) with another spec; "
            "a new attempt needs a new version"
        )
    return record_of(row)


def _remember(session: Session, key: IdempotencyKey | None, release_id: str, at: datetime) -> None:
    if key is not None and session.get(IdempotencyRow, (key.principal, key.key)) is None:
        session.add(
            IdempotencyRow(
                principal=key.principal,
                key=key.key,
                release_id=release_id,
                spec_hash=key.spec_hash,
                created_at=at,
            )
        )


def _lease(row: LeaseRow) -> LeaseState:
    return LeaseState(row.name, row.holder, row.epoch, row.expires_at, row.renewed_at)


class ServiceSql:
    """SqlStore's methods for the service; SqlStore supplies the transactions."""

    def _tx(self, *, write: bool) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _busy_conflict(self, session: Session, record: ReleaseRecord) -> InvalidInput | None:
        raise NotImplementedError

    # Submissions and the queue

    def submit_release(
        self,
        record: ReleaseRecord,
        key: IdempotencyKey | None = None,
        *,
        event: Event | None = None,
        audit: AuditEntry | None = None,
    ) -> tuple[ReleaseRecord, bool]:
        row = release_row(record)
        events = [] if event is None else [event_row(event)]
        try:
            with self._tx(write=True) as session:
                found = _existing(session, record, key)
                if found is not None:
                    _remember(session, key, found.release_id, row.created_at)
                    return found, False
                busy = self._busy_conflict(session, record)
                if busy is not None:
                    raise busy
                session.add(row)
                session.flush()
                _remember(session, key, record.release_id, row.created_at)
                session.add_all(events)
                if audit is not None:
                    at = aware(audit.at, f"audit entry {audit.action} at")
                    detail = as_json(audit.detail, f"audit entry {audit.action} detail")
                    access_sql.append(session, audit, at, detail)
        except IntegrityError as e:
            # A concurrent submission of the same key or release won: say what it made.
            with self._tx(write=False) as session:
                found = _existing(session, record, key)
            if found is not None:
                return found, False
            raise InvalidInput(f"release {record.release_id!r}: refused: {e.orig}") from e
        return record, True

    def find_releases(
        self,
        *,
        app: str | None = None,
        environment: str | None = None,
        phases: Iterable[Phase] | None = None,
        limit: int = 100,
    ) -> list[ReleaseRecord]:
        if limit < 1:
            raise InvalidInput(f"limit {limit}: must be 1 or more")
        query = select(ReleaseRow)
        if app is not None:
            query = query.where(ReleaseRow.app == app)
        if environment is not None:
            query = query.where(ReleaseRow.environment == environment)
        if phases is not None:
            query = query.where(ReleaseRow.phase.in_([Phase(p).value for p in phases]))
        query = query.order_by(ReleaseRow.created_at.desc(), ReleaseRow.id.desc()).limit(limit)
        with self._tx(write=False) as session:
            return [record_of(row) for row in session.scalars(query)]

    def release_bundle(self, release_id: str, gate_results: int = 200) -> ReleaseBundle | None:
        with self._tx(write=False) as session:
            row = session.get(ReleaseRow, release_id)
            if row is None:
                return None
            steps = select(StepRow).where(StepRow.release_id == release_id)
            return ReleaseBundle(
                record=record_of(row),
                steps=[
                    StepLogEntry(r.index, r.name, r.outcome, r.at)
                    for r in session.scalars(steps.order_by(StepRow.index))
                ],
                approvals=approvals_of(session, release_id),
                gate_results=gate_results_of(session, release_id, gate_results),
                events=events_of(session, release_id),
            )

    def unfinished_releases(self) -> list[ReleaseRecord]:
        live = [p.value for p in Phase if not p.final]
        query = (
            select(ReleaseRow)
            .where(ReleaseRow.phase.in_(live))
            .order_by(ReleaseRow.created_at, ReleaseRow.id)
        )
        with self._tx(write=False) as session:
            return [record_of(row) for row in session.scalars(query)]

    def set_stalled(self, release_id: str, reason: str | None) -> bool:
        with self._tx(write=True) as session:
            row = session.get(ReleaseRow, release_id)
            if row is None:
                raise InvalidInput(f"release {release_id!r} does not exist")
            if (row.stalled is None) == (reason is None):
                return False
            row.stalled = reason
            return True

    def step_log(self, release_id: str) -> list[StepLogEntry]:
        query = select(StepRow).where(StepRow.release_id == release_id).order_by(StepRow.index)
        with self._tx(write=False) as session:
            return [StepLogEntry(r.index, r.name, r.outcome, r.at) for r in session.scalars(query)]

    # Leases and the fence

    def acquire_lease(
        self, name: str, holder: str, now: datetime, duration_s: float
    ) -> Term | None:
        now = aware(now, f"lease {name} now")
        until = now + timedelta(seconds=duration_s)
        try:
            with self._tx(write=True) as session:
                row = session.get(LeaseRow, name, with_for_update=True)
                if row is None:
                    session.add(
                        LeaseRow(
                            name=name, holder=holder, epoch=1, expires_at=until, renewed_at=now
                        )
                    )
                    return Term(name, holder, 1)
                valid = row.expires_at is not None and row.expires_at > now
                if valid and row.holder != holder:
                    return None
                epoch = row.epoch if valid else row.epoch + 1  # a lapsed term is over
                moved = _changed(
                    session,
                    update(LeaseRow)
                    .where(LeaseRow.name == name, LeaseRow.epoch == row.epoch)
                    .values(holder=holder, epoch=epoch, expires_at=until, renewed_at=now),
                )
                return Term(name, holder, epoch) if moved == 1 else None
        except IntegrityError:
            return None  # another standby created the row first

    def renew_lease(self, term: Term, now: datetime, duration_s: float) -> bool:
        now = aware(now, f"lease {term.lease} now")
        with self._tx(write=True) as session:
            moved = _changed(
                session,
                update(LeaseRow)
                .where(
                    LeaseRow.name == term.lease,
                    LeaseRow.holder == term.holder,
                    LeaseRow.epoch == term.epoch,
                )
                .values(expires_at=now + timedelta(seconds=duration_s), renewed_at=now),
            )
        return moved == 1

    def release_lease(self, term: Term, now: datetime) -> None:
        now = aware(now, f"lease {term.lease} now")
        with self._tx(write=True) as session:
            _changed(
                session,
                update(LeaseRow)
                .where(
                    LeaseRow.name == term.lease,
                    LeaseRow.holder == term.holder,
                    LeaseRow.epoch == term.epoch,
                )
                .values(expires_at=now),
            )

    def advance_fence(self, name: str, holder: str, now: datetime) -> Term:
        now = aware(now, f"lease {name} now")
        with self._tx(write=True) as session:
            row = session.get(LeaseRow, name, with_for_update=True)
            if row is None:
                session.add(
                    LeaseRow(name=name, holder=holder, epoch=1, expires_at=None, renewed_at=now)
                )
                return Term(name, holder, 1)
            row.holder, row.epoch, row.expires_at, row.renewed_at = (
                holder,
                row.epoch + 1,
                None,
                now,
            )
            return Term(name, holder, row.epoch)

    def lease_state(self, name: str) -> LeaseState | None:
        with self._tx(write=False) as session:
            row = session.get(LeaseRow, name)
            return None if row is None else _lease(row)
