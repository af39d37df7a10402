"""The release's phase machine: every allowed move written once, checked by the store.

    queued ──▶ pending (the service's policy lets it start), or aborted | failed
    pending ──▶ running ◀──▶ holding ──▶ promoted (from running or holding)
       │           │            │
       └───────────┴─────┬──────┘
                         ▼
     rolling_back, or straight to rolled_back | aborted | failed
     rolling_back ──▶ rolled_back | aborted | failed (a decided rollback is never undone)

A queued release (submitted to `gatekeeper serve`, waiting for its turn, its window or
its approval) holds nothing: it moves to pending when it starts, and only the service
moves it there. A final phase (promoted, rolled_back, aborted, failed) is never left: a
finished release is never reopened, and an abort written by another process wins over
the executor's next write, because that write expects a phase the release is no longer
in.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidInput
from .release import Phase

_ANY_LIVE_TO = (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED)

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.QUEUED, Phase.PENDING, Phase.ABORTED, Phase.FAILED}),
    Phase.PENDING: frozenset({Phase.RUNNING, Phase.HOLDING, *_ANY_LIVE_TO}),
    Phase.RUNNING: frozenset({Phase.RUNNING, Phase.HOLDING, Phase.PROMOTED, *_ANY_LIVE_TO}),
    Phase.HOLDING: frozenset({Phase.RUNNING, Phase.HOLDING, Phase.PROMOTED, *_ANY_LIVE_TO}),
    Phase.ROLLING_BACK: frozenset(
        {Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED}
    ),
    Phase.PROMOTED: frozenset(),
    Phase.ROLLED_BACK: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.FAILED: frozenset(),
}


class PhaseConflict(InvalidInput):
    """The release is not in a phase the write expected (another process moved it, or it
    has ended)."""

    def __init__(self, release_id: str, current: Phase, wanted: Phase, note: str = "") -> None:
        why = "; ".join(w for w in ("it has ended" if current.final else "", note) if w)
        super().__init__(
            f"release {release_id}: cannot move from {current.value} to {wanted.value}"
            + (f" ({why})" if why else "")
        )
        self.release_id = release_id
        self.current = current
        self.wanted = wanted


def allowed(current: Phase, new: Phase) -> bool:
    return new in TRANSITIONS[current]


def sources(new: Phase, expected: Iterable[Phase] | None = None) -> frozenset[Phase]:
    """The phases a release may be in for a write of ``new``: those ``expected`` (all
    when None) from which the machine allows the move."""
    chosen = frozenset(Phase) if expected is None else frozenset(expected)
    return frozenset(p for p in chosen if allowed(p, new))
