"""One scraped series in memory: its samples, a counter's reset-adjusted running total, and
the values as scraped (gauges), for the built-in scraper."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass
class Samples:
    """One series' samples: times and the reset-adjusted running total of the counter.

    ``total[j] - total[i]`` is the counter's increase from sample i to sample j with
    resets handled, so an increase over any window costs two binary searches.
    """

    times: array[float] = field(default_factory=lambda: array("d"))
    total: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))  # as scraped (gauges)
    last_value: float = 0.0

    def append(self, t: float, value: float) -> None:
        if self.times and t <= self.times[-1]:
            return  # the clock went backwards: keep the history ordered
        if not self.times:
            self.total.append(0.0)
        else:
            step = value - self.last_value if value >= self.last_value else value
            self.total.append(self.total[-1] + step)
        self.times.append(t)
        self.values.append(value)
        self.last_value = value

    def trim(self, cutoff: float) -> None:
        k = bisect_right(self.times, cutoff)
        if k:
            del self.times[:k]
            del self.total[:k]
            del self.values[:k]

    def gauge(self, start: float, end: float) -> list[float]:
        """The values scraped in ``(start, end]``."""
        return list(self.values[bisect_right(self.times, start) : bisect_right(self.times, end)])

    def increase(self, start: float, end: float, max_gap: float) -> float | None:
        """The increase over ``(start, end]``; None without a sample inside or two in all."""
        times = self.times
        first_in = bisect_right(times, start)
        last = bisect_right(times, end) - 1
        if first_in > last:
            return None
        base = first_in - 1 if first_in > 0 else first_in
        if base == last:
            return None
        total = self.total
        out = total[last] - total[base]
        gap = times[base + 1] - times[base]
        if times[base] <= start and gap > max_gap:
            # A long gap across the window start: count only its part inside the window.
            outside = (start - times[base]) / gap
            out -= (total[base + 1] - total[base]) * outside
        return out
