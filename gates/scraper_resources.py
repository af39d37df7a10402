"""The built-in scraper's answers for the resource gates: requests, CPU, memory and database
pools per pod, from what it scraped.

The process metrics and pool gauges carry no app or version label: a target belongs to
the version whose request series it exports (as the Prometheus queries join them on
``job`` and ``instance``), and a pod is a target, named by its ``host:port``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from gatekeeper.domain.errors import InvalidInput, ProviderError

from .profiles import PoolMapping, Profile, Resources
from .provider import PodSeries, PoolUse, Subject, Usage
from .samples import Samples

CADVISOR_REFUSED = (
    "cAdvisor's container metrics need Prometheus; the built-in scraper reads the process "
    "metrics (resources: process)"
)

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (target URL, sorted labels)


def pod_name(url: str) -> str:
    """A target as a pod: its ``host:port``, as Prometheus labels it ``instance``."""
    return urlsplit(url).netloc or url


def identity_index(profile: Profile, subjects: Sequence[Subject]) -> dict[tuple[str, ...], Subject]:
    out = {}
    for s in subjects:
        values = profile.selector_values(s.app, s.namespace, s.version)
        out[tuple(values[label] for label in profile.identity_labels)] = s
    return out


def _check(profile: Profile, resources: Resources) -> None:
    if resources.name != "process":
        raise ProviderError(CADVISOR_REFUSED)
    if profile.own_series is None:
        raise ProviderError(
            f"profile {profile.name}: its request counter is a proxy's, not the pods': the "
            "resource gates need a profile whose requests the app's pods report (http, istio)"
        )


def _grid(start: datetime, end: datetime, step_s: float) -> list[datetime]:
    if not step_s > 0:
        raise InvalidInput(f"range step {step_s!r} must be positive seconds")
    count = int(math.floor((end - start).total_seconds() / step_s + 1e-9)) + 1
    return [start + timedelta(seconds=i * step_s) for i in range(max(count, 0))]


class ResourceScraping:
    """The resource methods of ``ScraperProvider`` (which holds the samples and the lock)."""

    interval_s: float
    _lock: threading.Lock
    _series: dict[str, dict[SeriesKey, Samples]]

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
        times = _grid(start, end, step_s)
        ids = identity_index(profile, subjects)
        out: dict[Subject, PodSeries] = {}
        with self._lock:
            for (url, items), series in self._series.get(profile.requests_metric, {}).items():
                labels = dict(items)
                subject = ids.get(tuple(labels.get(k, "") for k in profile.identity_labels))
                if subject is not None:
                    self._add(out, subject, url, series, times, window_s, counter=True)
        return out

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
        _check(profile, resources)
        times = _grid(start, end, step_s)
        cpu = what is Usage.CPU_SECONDS
        metric = resources.cpu_metric if cpu else resources.memory_metric
        out: dict[Subject, PodSeries] = {}
        with self._lock:
            for url, subject, series, _ in self._by_target(metric, profile, subjects):
                self._add(out, subject, url, series, times, window_s, counter=cpu)
        return out

    def pools(
        self,
        profile: Profile,
        resources: Resources,
        mappings: Sequence[PoolMapping],
        subjects: Sequence[Subject],
        window_s: float,
        at: datetime,
    ) -> dict[Subject, list[PoolUse]]:
        _check(profile, resources)
        end = at.timestamp()
        out: dict[Subject, list[PoolUse]] = {}
        with self._lock:
            for m in mappings:
                in_use: dict[tuple[Subject, str, str], float] = {}
                maxima: dict[tuple[Subject, str, str], float] = {}
                for url, subject, series, labels in self._by_target(
                    m.in_use_metric, profile, subjects
                ):
                    if any(labels.get(k) != v for k, v in m.in_use_matchers):
                        continue
                    seen = series.gauge(end - window_s, end)
                    if seen:
                        key = (subject, pod_name(url), labels.get(m.in_use_key, ""))
                        in_use[key] = in_use.get(key, 0.0) + sum(seen) / len(seen)
                for url, subject, series, labels in self._by_target(
                    m.max_metric, profile, subjects
                ):
                    seen = series.gauge(end - window_s, end)
                    if seen:
                        key = (subject, pod_name(url), labels.get(m.max_key, ""))
                        maxima[key] = max(maxima.get(key, -math.inf), max(seen))
                for key in sorted(in_use.keys() | maxima.keys()):
                    subject, pod, pool = key
                    out.setdefault(subject, []).append(
                        PoolUse(
                            m.name, pod, pool, in_use.get(key, math.nan), maxima.get(key, math.nan)
                        )
                    )
        return out

    # -- helpers (the caller holds the lock) --------------------------------------------------

    def _add(
        self,
        out: dict[Subject, PodSeries],
        subject: Subject,
        url: str,
        series: Samples,
        times: Sequence[datetime],
        window_s: float,
        *,
        counter: bool,
    ) -> None:
        """A series' figure at each time (a counter's increase, a gauge's mean) added to its
        pod's points."""
        pods = out.setdefault(subject, {})
        merged = dict(pods.get(pod_name(url), []))
        for t in times:
            end = t.timestamp()
            if counter:
                value = series.increase(end - window_s, end, 2 * self.interval_s)
            else:
                seen = series.gauge(end - window_s, end)
                value = sum(seen) / len(seen) if seen else None
            if value is not None:
                merged[t] = merged.get(t, 0.0) + value
        if merged:
            pods[pod_name(url)] = sorted(merged.items())
        elif not pods:
            del out[subject]

    def _owners(self, profile: Profile, subjects: Sequence[Subject]) -> dict[str, Subject]:
        """Each target that exports a subject's request series, and that subject."""
        ids = identity_index(profile, subjects)
        out: dict[str, Subject] = {}
        for (url, items), _ in self._series.get(profile.requests_metric, {}).items():
            labels = dict(items)
            if any(labels.get(k) != v for k, v in profile.own_series or ()):
                continue
            subject = ids.get(tuple(labels.get(k, "") for k in profile.identity_labels))
            if subject is not None:
                out[url] = subject
        return out

    def _by_target(
        self, metric: str, profile: Profile, subjects: Sequence[Subject]
    ) -> Iterator[tuple[str, Subject, Samples, dict[str, str]]]:
        """(target, subject, series, labels) of ``metric`` scraped from a subject's targets."""
        owners = self._owners(profile, subjects)
        for (url, items), series in self._series.get(metric, {}).items():
            subject = owners.get(url)
            if subject is not None:
                yield url, subject, series, dict(items)
