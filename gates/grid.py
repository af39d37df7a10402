"""Time grids for range queries: whole milliseconds, anchored at the evaluation instant.

Prometheus evaluates a range query at start, start+step, ..., up to end, and refuses one
of more than 11,000 points. A step from rounded float seconds drifts off the instant
being judged, and a step that must divide every duration can shrink to one millisecond.
Here the last point is the evaluation instant itself and the step is whole
milliseconds, grown only when the span would need more points than the cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def floor_ms(t: datetime) -> datetime:
    """``t`` truncated to a whole millisecond: the instant every grid is anchored at."""
    return _EPOCH + (t - _EPOCH) // _MS * _MS


def to_ms(t: datetime) -> int:
    """``t`` in whole milliseconds since the epoch (truncated)."""
    return (t - _EPOCH) // _MS


@dataclass(frozen=True)
class Grid:
    """The points ``end - k*step`` for k = n .. 0: ``end`` is always a point."""

    end: datetime
    step_ms: int
    points: int

    @property
    def start(self) -> datetime:
        return self.end - (self.points - 1) * self.step_ms * _MS

    @property
    def step_s(self) -> float:
        return self.step_ms / 1000

    def times(self) -> list[datetime]:
        return [self.start + k * self.step_ms * _MS for k in range(self.points)]


def grid(at: datetime, span_s: float, step_s: float, max_points: int = MAX_POINTS) -> Grid:
    """A grid ending at ``at`` (floored to the millisecond) whose first point is at least
    ``span_s`` before it, with a step of ``step_s`` rounded to whole milliseconds (at
    least 1 ms), widened if the span would take more than ``max_points`` points."""
    end = floor_ms(at)
    span_ms = max(0, math.ceil(span_s * 1000 - 1e-6))
    step_ms = max(1, round(step_s * 1000))
    if span_ms / step_ms + 1 > max_points:
        step_ms = math.ceil(span_ms / (max_points - 1))
    intervals = math.ceil(span_ms / step_ms)
    return Grid(end=end, step_ms=step_ms, points=intervals + 1)
