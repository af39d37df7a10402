"""The audit log's hash chain: entries, their hashes, and the walk that finds a broken link.

Each entry's hash is the SHA-256 (hex) of the canonical JSON of the object::

    {"action": ..., "actor": ..., "at": "2026-03-01T12:00:00.123456+00:00",
     "detail": {...}, "prev_hash": ..., "release_id": ... or null, "seq": 7}

with keys sorted, no spaces (``","`` and ``":"``), UTF-8 without escapes, ``at`` in UTC
with microseconds. ``prev_hash`` is the hash of entry ``seq - 1`` (``GENESIS``, 64 zeros,
for entry 1). Editing, deleting or moving an entry breaks the chain at that entry.

Deleting entries at the end leaves a shorter chain that is intact in itself: the head row
(the last seq and hash, kept with every append) catches that unless it is rewritten too,
and so does an anchor (a seq and hash exported elsewhere earlier). Anyone who can write
the database can also recompute every hash after an edit: only an anchor kept out of
their reach detects that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# How far from its own seq a moved entry is looked for, either way.
_MOVED_WITHIN = 10_000


@dataclass(frozen=True)
class AuditEntry:
    """An action to append to the audit log; the store gives it its seq and hashes."""

    at: datetime
    actor: str
    action: str  # submit, approve, reject, abort, rollback, policy-decision, step, ...
    release_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """An entry as stored: its place in the chain and its hashes."""

    seq: int
    at: datetime
    actor: str
    action: str
    release_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    """The last entry of the chain: its seq (0 when empty) and its hash (``GENESIS`` then)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class AuditProblem:
    """The first thing wrong with the chain: the entry's seq, a kind and the explanation.

    Kinds: ``edited`` (content no longer matches its hash), ``deleted`` (a gap in seq),
    ``reordered`` (an entry sits at another seq than it was written at), ``unlinked``
    (prev_hash is not the previous entry's hash: that one was rewritten), ``truncated``
    (the chain ends before the head or the anchor), ``head`` (the head row disagrees with
    the chain), ``anchor`` (the anchored entry has another hash).
    """

    seq: int
    kind: str
    message: str


@dataclass(frozen=True)
class AuditReport:
    entries: int  # entries checked
    end: AuditHead  # the last entry read
    problem: AuditProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def canonical(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    release_id: str | None,
    detail: dict[str, Any],
    prev_hash: str,
) -> bytes:
    """The bytes an entry's hash is taken over."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"audit entry {seq}: at {at.isoformat()} has no time zone")
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "release_id": release_id,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    release_id: str | None,
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    return hashlib.sha256(
        canonical(seq, at, actor, action, release_id, detail, prev_hash)
    ).hexdigest()


def record_hash(record: AuditRecord, seq: int | None = None) -> str:
    """The hash ``record``'s content has (at ``seq``, by default its own)."""
    return entry_hash(
        record.seq if seq is None else seq,
        record.at,
        record.actor,
        record.action,
        record.release_id,
        record.detail,
        record.prev_hash,
    )


def _short(digest: str) -> str:
    return digest[:12]


def _written_at(record: AuditRecord, last: int) -> int | None:
    """The seq ``record``'s hash says it was written at, when not its own; None if none."""
    low = max(1, record.seq - _MOVED_WITHIN)
    high = max(last, record.seq) + _MOVED_WITHIN
    for seq in range(low, high + 1):
        if seq != record.seq and record_hash(record, seq) == record.hash:
            return seq
    return None


class ChainWalk:
    """Walks the entries in seq order and keeps the first problem found."""

    def __init__(self, last_seq: int, anchor: AuditHead | None = None) -> None:
        self._last = last_seq  # the head's seq, to bound the search for a moved entry
        self._anchor = anchor
        self._anchored: str | None = None  # the hash of the anchor's entry, seen on the way
        self.expected = 1
        self.prev = GENESIS
        self.count = 0
        self.problem: AuditProblem | None = None

    @property
    def end(self) -> AuditHead:
        return AuditHead(self.expected - 1, self.prev)

    def feed(self, record: AuditRecord) -> bool:
        """Check the next entry; False once a problem is found (stop reading then)."""
        if self.problem is not None:
            return False
        self.problem = self._check(record)
        if self.problem is not None:
            return False
        self.count += 1
        if self._anchor is not None and record.seq == self._anchor.seq:
            self._anchored = record.hash
        self.expected = record.seq + 1
        self.prev = record.hash
        return True

    def _check(self, record: AuditRecord) -> AuditProblem | None:
        n = record.seq
        if n > self.expected:
            gap = (
                f"entry {self.expected}"
                if n == self.expected + 1
                else f"entries {self.expected}-{n - 1}"
            )
            after = f"goes from entry {self.expected - 1}" if self.expected > 1 else "starts"
            return AuditProblem(
                self.expected, "deleted", f"{gap} deleted: the chain {after} to entry {n}"
            )
        if n < self.expected:  # not from a store that orders by a unique seq
            return AuditProblem(n, "reordered", f"entry {n} comes after entry {self.expected - 1}")
        computed = record_hash(record)
        if computed != record.hash:
            moved = _written_at(record, self._last)
            if moved is not None:
                return AuditProblem(
                    n,
                    "reordered",
                    f"entry {n} holds the entry written as seq {moved}: "
                    "entries were moved or renumbered",
                )
            return AuditProblem(
                n,
                "edited",
                f"entry {n} was edited: stored hash {_short(record.hash)}, "
                f"its content hashes to {_short(computed)}",
            )
        if record.prev_hash != self.prev:
            before = f"entry {n - 1}" if n > 1 else "the start of the chain"
            return AuditProblem(
                n,
                "unlinked",
                f"entry {n}: prev_hash {_short(record.prev_hash)} is not the hash of "
                f"{before} ({_short(self.prev)}): {before} was rewritten or replaced",
            )
        return None

    def finish(self, head: AuditHead | None) -> AuditReport:
        """The report, after the last entry: the chain's end against the anchor and head."""
        end = self.end
        if self.problem is None and self._anchor is not None:
            self.problem = _against_anchor(end, self._anchor, self._anchored)
        if self.problem is None and head is not None:
            self.problem = _against_head(end, head)
        return AuditReport(self.count, end, self.problem)


def _against_anchor(end: AuditHead, anchor: AuditHead, found: str | None) -> AuditProblem | None:
    if anchor.seq == 0:
        return None
    if end.seq < anchor.seq:
        return AuditProblem(
            end.seq + 1,
            "truncated",
            f"the chain ends at entry {end.seq}, before the anchored entry {anchor.seq}: "
            "entries at the end were deleted",
        )
    if found != anchor.hash:
        return AuditProblem(
            anchor.seq,
            "anchor",
            f"entry {anchor.seq} hashes to {_short(found or '')}, the anchor says "
            f"{_short(anchor.hash)}: the chain was rewritten up to there",
        )
    return None


def _against_head(end: AuditHead, head: AuditHead) -> AuditProblem | None:
    if end.seq < head.seq:
        return AuditProblem(
            end.seq + 1,
            "truncated",
            f"the chain ends at entry {end.seq} but the head says entry {head.seq} is the "
            "last: entries at the end were deleted",
        )
    if end.seq > head.seq:
        return AuditProblem(
            head.seq + 1,
            "head",
            f"entry {head.seq + 1} is past the head (entry {head.seq}): written around the "
            "chain's lock, or the head row was edited",
        )
    if end.hash != head.hash:
        return AuditProblem(
            head.seq,
            "head",
            f"entry {head.seq} hashes to {_short(end.hash)}, the head row says "
            f"{_short(head.hash)}: the last entry or the head row was rewritten",
        )
    return None


def verify_chain(
    records: Iterable[AuditRecord], head: AuditHead | None, anchor: AuditHead | None = None
) -> AuditReport:
    """Walk ``records`` (in seq order) and report the first problem, or none."""
    walk = ChainWalk(head.seq if head is not None else 0, anchor)
    for record in records:
        if not walk.feed(record):
            break
    return walk.finish(head)
