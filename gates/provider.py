"""The provider protocol: providers fetch numbers for subjects; they never judge.

A provider answers for many subjects at once, so one query per gate per tick serves
every release being evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .profiles import Profile


@dataclass(frozen=True, order=True)
class Subject:
    """One version of one app: the series a gate reads."""

    app: str
    version: str
    namespace: str = "default"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.app}@{self.version}"


@dataclass(frozen=True)
class Counts:
    """Requests and 5xx responses counted over one window."""

    requests: float
    errors: float


Buckets = tuple[tuple[float, float], ...]
"""A cumulative histogram over one window: (upper bound in seconds, count), ascending, +Inf last."""

LabeledValue = tuple[Mapping[str, str], float]


class Provider(Protocol):
    """Where measurements come from. Errors: ProviderUnavailable, ProviderError."""

    name: str

    def scrape_interval(self) -> float | None:
        """Seconds between samples, when known (windows shorter than two are refused)."""
        ...

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        """Seconds between samples of ``subject``'s series, when known: where jobs scrape at
        different intervals, the interval of the one that scrapes the subject."""
        ...

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        """Whether each ``host:port`` is being scraped successfully as of ``at``.

        A version is "seen" once its /metrics answers, not once its request series exist:
        client libraries create labelled series at their first request, which a candidate
        gets only after the first shift.
        """
        ...

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        """Requests and errors per subject over ``(at - window, at]``; absent: no data."""
        ...

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        """``counts`` evaluated at start, start+step, ..., end (points without data left out)."""
        ...

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        """The request-duration histogram per subject over the window."""
        ...

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        """A custom PromQL query (only providers that speak PromQL)."""
        ...
