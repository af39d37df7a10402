"""The provider protocol: providers fetch numbers for subjects; they never judge.

A provider answers for many subjects at once, so one query per gate per tick serves
every release being evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from .profiles import PoolMapping, Profile, Resources


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

PerPod = dict[str, float]
"""A figure per pod (its ``instance`` or ``pod`` label, or the scraper's host:port)."""


class Usage(StrEnum):
    """What a resource query measures per pod over a window."""

    CPU_SECONDS = "cpu_seconds"  # the increase of the CPU seconds counter
    MEMORY_BYTES = "memory_bytes"  # the mean of the memory gauge


@dataclass(frozen=True)
class PoolUse:
    """One database pool of one pod over a window: connections in use (mean) and its max."""

    mapping: str
    pod: str
    pool: str
    in_use: float
    maximum: float


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


PodSeries = dict[str, list[tuple[datetime, float]]]
"""A figure per pod over time: (when, value) in order, points without data left out."""


@runtime_checkable
class ResourceProvider(Protocol):
    """Providers that also measure the pods behind a version: requests, CPU, memory and
    database pools, per pod. The resource gates are not applicable with a provider
    that does not (the built-in scraper and Prometheus both do).

    The range methods evaluate at start, start+step, ..., end, each point over the
    ``window_s`` before it (the resource gates ask for adjacent windows: window = step).
    """

    def requests_range(
        self,
        profile: Profile,
        resources: Resources,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, PodSeries]:
        """Requests per pod; a pod its request series do not name is counted under ""."""
        ...

    def usage_range(
        self,
        profile: Profile,
        resources: Resources,
        what: Usage,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, PodSeries]:
        """CPU seconds used (increase) or memory held (mean) per pod; a subject without
        any series is absent."""
        ...

    def pools(
        self,
        profile: Profile,
        resources: Resources,
        mappings: Sequence[PoolMapping],
        subjects: Sequence[Subject],
        window_s: float,
        at: datetime,
    ) -> dict[Subject, list[PoolUse]]:
        """Every pool of every pod of each subject over ``(at - window, at]``, from each
        mapping it exports; a subject that exports none is absent."""
        ...
