"""The local target's clock: wall-clock reads and sleeps, injectable so tests need not wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time for the local target (the engine's clock has the same shape)."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def epoch(clock: Clock) -> float:
    """``clock.now()`` as seconds since the epoch, the unit of the state file's times."""
    return clock.now().timestamp()
