"""The audit log through the engine: record an action, read the entries, verify the chain.

The service calls ``record`` for every action it takes or refuses; ``gatekeeper audit``
reads and verifies. Each entry is chained to the one before by its hash (see
``gatekeeper.store.audit_chain``), so an edited, deleted or moved entry is found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.store.audit_chain import (
    GENESIS,
    AuditEntry,
    AuditHead,
    AuditRecord,
    AuditReport,
)
from gatekeeper.store.base import Store
from gatekeeper.store.factory import open_store

__all__ = [
    "ACTIONS",
    "AuditHead",
    "AuditRecord",
    "AuditReport",
    "entries",
    "entry_json",
    "head",
    "head_at",
    "list_at",
    "parse_anchor",
    "record",
    "report_json",
    "verify",
    "verify_at",
]

# The actions the gatekeeper records; ``record`` takes others too (names are open-ended).
ACTIONS: tuple[str, ...] = (
    "submit",
    "approve",
    "reject",
    "abort",
    "retry",
    "rollback",
    "policy-decision",
    "step",
    "verdict-change",
    "access-denied",
    "token-create",
    "token-revoke",
)

_ANCHOR = re.compile(r"(\d+):([0-9a-f]{64})")


def record(
    store: Store,
    actor: str,
    action: str,
    release_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> AuditRecord:
    """Append one action to the audit log, stamped now; returns it with its seq and hash."""
    entry = AuditEntry(clock.now(), actor, action, release_id, dict(detail or {}))
    return store.append_audit(entry)


def entries(
    store: Store, release_id: str | None = None, *, after_seq: int = 0, limit: int = 1000
) -> list[AuditRecord]:
    return store.audit_entries(release_id, after_seq=after_seq, limit=limit)


def head(store: Store) -> AuditHead:
    """The chain's last seq and hash: export it elsewhere to anchor the log (README)."""
    return store.audit_head()


def verify(store: Store, anchor: AuditHead | None = None) -> AuditReport:
    return store.verify_audit(anchor)


def parse_anchor(text: str) -> AuditHead:
    """``SEQ:HASH`` as `gatekeeper audit head` prints it."""
    found = _ANCHOR.fullmatch(text.strip().lower())
    if found is None:
        raise InvalidInput(
            f"anchor {text!r} is not SEQ:HASH (a seq, a colon and 64 hex digits), "
            "as `gatekeeper audit head` prints it"
        )
    seq, digest = int(found.group(1)), found.group(2)
    if seq == 0 and digest != GENESIS:
        raise InvalidInput(f"anchor {text!r}: entry 0 is the empty chain, hash {GENESIS}")
    return AuditHead(seq, digest)


def entry_json(entry: AuditRecord) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
        "actor": entry.actor,
        "action": entry.action,
        "release_id": entry.release_id,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def report_json(report: AuditReport) -> dict[str, Any]:
    problem = report.problem
    return {
        "ok": report.ok,
        "entries": report.entries,
        "end": {"seq": report.end.seq, "hash": report.end.hash},
        "problem": None
        if problem is None
        else {"seq": problem.seq, "kind": problem.kind, "message": problem.message},
    }


# For the command line: open the store at a URL (or the default), act, close.


def verify_at(db_url: str | None, anchor: str | None = None) -> AuditReport:
    wanted = None if anchor is None else parse_anchor(anchor)
    store = open_store(db_url)
    try:
        return verify(store, wanted)
    finally:
        store.close()


def list_at(
    db_url: str | None, release_id: str | None, *, after_seq: int = 0, limit: int = 1000
) -> list[AuditRecord]:
    store = open_store(db_url)
    try:
        return entries(store, release_id, after_seq=after_seq, limit=limit)
    finally:
        store.close()


def head_at(db_url: str | None) -> AuditHead:
    store = open_store(db_url)
    try:
        return head(store)
    finally:
        store.close()
