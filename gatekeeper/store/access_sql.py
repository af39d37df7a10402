"""The SQL side of API tokens and the audit chain; SqlStore's methods call these in a transaction.

The chain's lock is the head row (``audit_head``, id 1): an append reads it ``FOR UPDATE``
on PostgreSQL, and on SQLite every write transaction holds the database's write lock from
its start (``BEGIN IMMEDIATE``). The next seq and the link come from the locked head, and
the entry and the new head commit together, so two writers (two service replicas) queue
behind each other instead of both linking to the same entry. The seq's primary key would
refuse a fork even if the lock were bypassed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from gatekeeper.domain.errors import GatekeeperError, InvalidInput, TemporaryError

from .audit_chain import (
    AuditEntry,
    AuditHead,
    AuditRecord,
    AuditReport,
    ChainWalk,
    entry_hash,
)
from .base import TokenRecord
from .models import AuditHeadRow, AuditRow, TokenRow

HEAD_ID = 1
_BATCH = 1000  # entries read per query while verifying


# API tokens


def token_row(token: TokenRecord, created_at: datetime, expires_at: datetime | None) -> TokenRow:
    return TokenRow(
        id=token.token_id,
        principal=token.principal,
        roles=list(token.roles),
        token_hash=token.token_hash,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=None,
    )


def token_taken(session: Session, token: TokenRecord) -> InvalidInput | None:
    """Why ``token`` cannot be stored, or None."""
    if session.get(TokenRow, token.token_id) is not None:
        return InvalidInput(f"token {token.token_id!r} exists already")
    found = session.scalar(select(TokenRow.id).where(TokenRow.token_hash == token.token_hash))
    if found is not None:
        return InvalidInput(f"token {token.token_id!r}: its hash is token {found!r}'s already")
    return None


def token_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        token_id=row.id,
        principal=row.principal,
        roles=tuple(str(r) for r in row.roles),
        token_hash=row.token_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def find_token(session: Session, token_hash: str) -> TokenRecord | None:
    row = session.scalars(select(TokenRow).where(TokenRow.token_hash == token_hash)).first()
    return None if row is None else token_record(row)


def list_tokens(session: Session) -> list[TokenRecord]:
    query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
    return [token_record(row) for row in session.scalars(query)]


def revoke(session: Session, token_id: str, at: datetime) -> TokenRecord:
    session.execute(
        update(TokenRow)
        .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    row = session.get(TokenRow, token_id, populate_existing=True)
    if row is None:
        raise InvalidInput(f"token {token_id!r} does not exist")
    return token_record(row)


# The audit chain


def _record(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        release_id=row.release_id,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _head(session: Session, *, lock: bool) -> AuditHeadRow:
    query = select(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID)
    if lock:
        query = query.with_for_update()
    head = session.scalars(query).first()
    if head is None:
        raise GatekeeperError(
            f"audit log: the head row (audit_head id {HEAD_ID}) is missing; it is created by "
            "the migrations and never deleted: the table was edited by hand"
        )
    return head


def append(
    session: Session, entry: AuditEntry, at: datetime, detail: dict[str, Any]
) -> AuditRecord:
    """Append under the head's lock; ``at`` and ``detail`` as they will be stored."""
    head = _head(session, lock=True)
    seq, prev = head.seq + 1, head.hash
    digest = entry_hash(seq, at, entry.actor, entry.action, entry.release_id, detail, prev)
    session.add(
        AuditRow(
            seq=seq,
            at=at,
            actor=entry.actor,
            action=entry.action,
            release_id=entry.release_id,
            detail=detail,
            prev_hash=prev,
            hash=digest,
        )
    )
    moved = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == HEAD_ID, AuditHeadRow.seq == head.seq)
        .values(seq=seq, hash=digest)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", moved).rowcount != 1:
        # Only a writer that skipped the lock can get here; the seq's key would refuse it too.
        raise TemporaryError(f"audit log: the head moved past entry {head.seq} under the lock")
    return AuditRecord(seq, at, entry.actor, entry.action, entry.release_id, detail, prev, digest)


def entries(
    session: Session, release_id: str | None, after_seq: int, limit: int
) -> list[AuditRecord]:
    query = select(AuditRow).where(AuditRow.seq > after_seq)
    if release_id is not None:
        query = query.where(AuditRow.release_id == release_id)
    query = query.order_by(AuditRow.seq).limit(limit)
    return [_record(row) for row in session.scalars(query)]


def head(session: Session) -> AuditHead:
    row = _head(session, lock=False)
    return AuditHead(row.seq, row.hash)


def _all(session: Session) -> Iterator[AuditRecord]:
    last = 0
    while True:
        batch = entries(session, None, last, _BATCH)
        yield from batch
        if len(batch) < _BATCH:
            return
        last = batch[-1].seq


def verify(session: Session, anchor: AuditHead | None) -> AuditReport:
    """Walk the chain in one snapshot (the caller's transaction) and report."""
    current = head(session)
    walk = ChainWalk(current.seq, anchor)
    for record in _all(session):
        if not walk.feed(record):
            break
    return walk.finish(current)
