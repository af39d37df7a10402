"""The local target's clock: the project's one injectable clock, and seconds since the epoch."""

from __future__ import annotations

from gatekeeper.domain.clock import Clock, SystemClock

__all__ = ["Clock", "SystemClock", "epoch"]


def epoch(clock: Clock) -> float:
    """``clock.now()`` as seconds since the epoch, the unit of the state file's times."""
    return clock.now().timestamp()
