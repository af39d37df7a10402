"""The built-in scraper provider: scrapes /metrics itself, for machines without Prometheus.

It reads the targets' Prometheus text exposition on a background thread, keeps each
series' samples in memory for a bounded retention, and computes the figures the
Prometheus provider gets from ``sum by (...) (increase(metric{...}[window]))``.

How an increase over ``(at - window, at]`` is computed, per series:

* The samples used run from a *base* sample to the last sample at or before ``at``. The
  base is the last sample at or before the window start when there is one, else the
  first sample inside the window (a series born inside the window).
* Counter resets are handled as Prometheus does: a value lower than the one before
  means the process restarted, and the new value counts in full.
* There is no extrapolation. With regular scrapes the span from base to last sample is
  on average exactly one window (it starts up to one interval early and ends up to one
  interval early), so the figure is not biased; Prometheus instead uses only the
  samples inside the window and stretches their increase to the window's length.
* When the step across the window start is a gap longer than two scrape intervals (the
  target did not answer for a while), only the share of that step's increase that falls
  inside the window counts, as if the rate was steady across the gap.
* A series needs at least one sample inside the window and two samples in all; a
  subject without such a series is absent from the result.
* A counter series born on a target that answered before (client libraries create a
  labelled counter at its first request) starts from 0 at that earlier scrape, so its
  first requests count: the traffic gate compares a new candidate's count with stable's
  right after a shift.

The resource gates read the process metrics (``process_cpu_seconds_total``,
``process_resident_memory_bytes``) and the database pool gauges. Those carry no app or
version label: a target belongs to the version whose request series it exports, as
the Prometheus queries join them on ``job`` and ``instance``, and a pod is a target
(its ``host:port``).

Samples are stamped when the target's answer is stored, not when the scrape starts as
Prometheus does (the difference is one round trip): a scrape still in flight when a
query for "now" runs would otherwise hold a sample stamped inside the window that the
query cannot see, cutting the window short by one interval. Timestamps in the
exposition are ignored. Every sample gets the target's URL as an extra identity, as
Prometheus adds ``instance``, so identical label sets from two targets are two series.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import InvalidInput, ProviderError

from .exposition import parse_exposition as parse_exposition
from .profiles import (
    POOL_MAPPINGS,
    PROFILES,
    RESOURCES,
    Profile,
    is_error_code,
)
from .provider import Buckets, Counts, LabeledValue, Subject
from .samples import Samples
from .scraper_resources import ResourceScraping, identity_index

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
QUERY_REFUSED = (
    "custom PromQL needs Prometheus; the built-in scraper computes the profile metrics only"
)

MAX_SCRAPE_WORKERS = 8

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]  # (target URL, sorted labels)


def profile_metrics(profiles: Iterable[Profile] | None = None) -> frozenset[str]:
    """The sample names the gates read: the profiles' request counters and duration
    buckets, the process metrics and every known pool exporter's gauges."""
    chosen = PROFILES.values() if profiles is None else profiles
    process = RESOURCES["process"]
    return frozenset(
        [name for p in chosen for name in (p.requests_metric, p.duration_bucket_metric)]
        + [process.cpu_metric, process.memory_metric]
        + [n for m in POOL_MAPPINGS.values() for n in (m.in_use_metric, m.max_metric)]
    )


def _counter_names() -> frozenset[str]:
    """Sample names that are counters: a series of them born on a known target starts at 0."""
    return frozenset(
        [name for p in PROFILES.values() for name in (p.requests_metric, p.duration_bucket_metric)]
        + [RESOURCES["process"].cpu_metric]
    )


COUNTERS = _counter_names()


def normalize_target(url: str) -> str:
    """``host:port`` gets ``http://``; a URL without a path gets ``/metrics``."""
    text = url.strip()
    if not text:
        raise InvalidInput("scrape target is empty: give a URL such as http://host:port/metrics")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"scrape target {url!r} is not an http(s) URL such as http://host:port/metrics"
        )
    if parts.path in ("", "/"):
        text = text.rstrip("/") + "/metrics"
    return text


# -- the sample store ----------------------------------------------------------------------


@dataclass
class _TargetState:
    error: str | None = None
    failing_since: float | None = None
    last_ok: float | None = None  # when it last answered


class ScraperProvider(ResourceScraping):
    """Scrapes targets' /metrics itself and answers the profile queries from memory."""

    name = "scraper"

    def __init__(
        self,
        targets: Iterable[str] = (),
        *,
        interval_s: float = 1.0,
        retention_s: float = 3600.0,
        timeout_s: float | None = None,
        metrics: Iterable[str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not interval_s > 0:
            raise InvalidInput(f"scrape interval {interval_s!r} must be positive seconds")
        if not retention_s >= 2 * interval_s:
            raise InvalidInput(
                f"retention {retention_s!r}s must hold at least two scrape intervals "
                f"(2 x {interval_s:g}s)"
            )
        self.interval_s = float(interval_s)
        self.retention_s = float(retention_s)
        self.timeout_s = float(timeout_s) if timeout_s else max(0.1, min(2.0, interval_s))
        self.metrics = frozenset(metrics) if metrics is not None else profile_metrics()
        self._clock = clock
        self._client = httpx.Client(
            transport=transport,
            timeout=self.timeout_s,
            headers={"Accept": ACCEPT},
            follow_redirects=True,
        )
        self._lock = threading.Lock()
        self._targets: dict[str, _TargetState] = {}
        # sample name -> series key -> samples
        self._series: dict[str, dict[SeriesKey, Samples]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.scrapes = 0
        for url in targets:
            self.add_target(url)

    # -- targets ----------------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        with self._lock:
            return list(self._targets)

    def add_target(self, url: str) -> str:
        """Scrape ``url`` from the next scrape on; returns the normalized URL."""
        target = normalize_target(url)
        with self._lock:
            self._targets.setdefault(target, _TargetState())
        return target

    def remove_target(self, url: str) -> None:
        """Stop scraping ``url``; its samples stay until retention drops them."""
        target = normalize_target(url)
        with self._lock:
            self._targets.pop(target, None)

    def target_errors(self) -> dict[str, str | None]:
        """Each target's error at its last scrape (None: it answered)."""
        with self._lock:
            return {url: state.error for url, state in self._targets.items()}

    # -- scraping ---------------------------------------------------------------------------

    def scrape_once(self, now: datetime | None = None) -> dict[str, str | None]:
        """Scrape every target once; returns each target's error (None: it answered).

        Samples are stamped with ``now`` when given, else with the clock's time when the
        target's answer is stored, read under the store's lock: a query for an instant
        after that stamp cannot run before the samples are in.
        """
        targets = self.targets
        if len(targets) <= 1:
            done = [self._scrape_target(url, now) for url in targets]
        else:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=MAX_SCRAPE_WORKERS, thread_name_prefix="scraper"
                    )
                pool = self._pool
            done = list(pool.map(self._scrape_target, targets, [now] * len(targets)))
        with self._lock:
            stamps = [ts for _, ts in done]
            if now is not None:
                stamps.append(now.timestamp())
            if stamps:
                self._expire(max(stamps) - self.retention_s)
            self.scrapes += 1
        return {url: error for url, (error, _) in zip(targets, done, strict=True)}

    def _scrape_target(self, url: str, now: datetime | None) -> tuple[str | None, float]:
        """Fetch one target and store its samples; returns (error, stamp)."""
        samples, error = self._fetch(url)
        with self._lock:
            ts = (now if now is not None else self._clock.now()).timestamp()
            state = self._targets.get(url)
            if state is None:
                return error, ts  # removed while it was being scraped
            answered_before = state.last_ok
            self._note(url, state, error, ts)
            for name, labels, value in samples:
                by_key = self._series.setdefault(name, {})
                series = by_key.get((url, labels))
                if series is None:
                    series = by_key[(url, labels)] = Samples()
                    if name in COUNTERS and answered_before is not None and answered_before < ts:
                        series.append(answered_before, 0.0)  # born since that scrape
                series.append(ts, value)
        return error, ts

    def _fetch(self, url: str) -> tuple[list[tuple[str, Labels, float]], str | None]:
        """The kept samples of one target, or the reason it gave none."""
        try:
            resp = self._client.get(url)
            if resp.status_code != 200:
                return [], f"HTTP {resp.status_code}"
            samples = [
                (name, tuple(sorted(labels.items())), value)
                for name, labels, value in parse_exposition(resp.text)
                if name in self.metrics and not math.isnan(value)
            ]
            return samples, None
        except httpx.HTTPError as e:
            return [], f"{type(e).__name__}: {e}"
        except ValueError as e:
            return [], f"unparsable exposition: {e}"

    def _note(self, url: str, state: _TargetState, error: str | None, ts: float) -> None:
        if error is None:
            if state.error is not None and state.failing_since is not None:
                log.info(
                    "scrape target %s answers again after %.0fs", url, ts - state.failing_since
                )
            state.error, state.failing_since, state.last_ok = None, None, ts
            return
        if state.error is None:
            log.warning("scrape of %s failed: %s", url, error)
            state.failing_since = ts
        else:
            log.debug("scrape of %s still failing: %s", url, error)
        state.error = error

    def _expire(self, cutoff: float) -> None:
        for name in list(self._series):
            by_key = self._series[name]
            for key in list(by_key):
                series = by_key[key]
                series.trim(cutoff)
                if not series.times:
                    del by_key[key]
            if not by_key:
                del self._series[name]

    # -- the background thread ---------------------------------------------------------------

    def start(self) -> None:
        """Scrape every ``interval_s`` on a daemon thread (the first scrape at once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="scraper", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        """Stop scraping and release connections."""
        self.stop()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> ScraperProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, stop: threading.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self.scrape_once()
            except Exception:  # the thread must outlive any one bad scrape
                log.exception("scrape failed")
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # a scrape overran: skip the missed ticks
                next_at = now + self.interval_s - (now - next_at) % self.interval_s
            stop.wait(next_at - now)

    # -- provider protocol -------------------------------------------------------------------

    def scrape_interval(self) -> float | None:
        return self.interval_s

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        """The endpoint's last scrape, at or before ``at``, succeeded."""
        cutoff = at.timestamp()
        with self._lock:
            states = {e: self._targets.get(normalize_target(e)) for e in endpoints}
            return {
                e: s is not None
                and s.error is None
                and s.last_ok is not None
                and s.last_ok <= cutoff + 1e-3
                for e, s in states.items()
            }

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        return self.interval_s  # every target is scraped on the same tick

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        with self._lock:
            return self._counts(profile, subjects, window_s, at.timestamp())

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        if not step_s > 0:
            raise InvalidInput(f"range step {step_s!r} must be positive seconds")
        points = int(math.floor((end - start).total_seconds() / step_s + 1e-9)) + 1
        out: dict[Subject, list[tuple[datetime, Counts]]] = {}
        with self._lock:
            for i in range(max(points, 0)):
                t = start + timedelta(seconds=i * step_s)
                for subject, c in self._counts(profile, subjects, window_s, t.timestamp()).items():
                    out.setdefault(subject, []).append((t, c))
        return out

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        end = at.timestamp()
        acc: dict[Subject, dict[float, float]] = {}
        with self._lock:
            for subject, labels, inc in self._increases(
                profile.duration_bucket_metric, profile, subjects, end - window_s, end
            ):
                le_text = labels.get("le")
                if le_text is None:
                    continue
                try:
                    le = float(le_text) * profile.duration_unit_s
                except ValueError:
                    continue
                hist = acc.setdefault(subject, {})
                hist[le] = hist.get(le, 0.0) + inc
        return {
            subject: _monotone(sorted(hist.items()))
            for subject, hist in acc.items()
            if math.inf in hist  # a histogram without +Inf is not a histogram
        }

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        raise ProviderError(QUERY_REFUSED)

    # -- computing ---------------------------------------------------------------------------

    def _counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, end: float
    ) -> dict[Subject, Counts]:
        requests: dict[Subject, float] = {}
        errors: dict[Subject, float] = {}
        for subject, labels, inc in self._increases(
            profile.requests_metric, profile, subjects, end - window_s, end
        ):
            requests[subject] = requests.get(subject, 0.0) + inc
            if is_error_code(labels.get(profile.code_label, "")):
                errors[subject] = errors.get(subject, 0.0) + inc
        return {s: Counts(requests=r, errors=errors.get(s, 0.0)) for s, r in requests.items()}

    def _increases(
        self,
        metric: str,
        profile: Profile,
        subjects: Sequence[Subject],
        start: float,
        end: float,
    ) -> Iterator[tuple[Subject, Mapping[str, str], float]]:
        """(subject, labels, increase) of every series of ``metric`` with data in the window.

        The caller holds the lock.
        """
        ids = identity_index(profile, subjects)
        if not ids:
            return
        max_gap = 2 * self.interval_s
        for (_, items), series in self._series.get(metric, {}).items():
            labels = dict(items)
            subject = ids.get(tuple(labels.get(label, "") for label in profile.identity_labels))
            if subject is None:
                continue
            inc = series.increase(start, end, max_gap)
            if inc is not None:
                yield subject, labels, inc


def _monotone(items: list[tuple[float, float]]) -> Buckets:
    """Cumulative counts never decrease with le (a scrape can catch buckets mid-update)."""
    out: list[tuple[float, float]] = []
    running = 0.0
    for le, count in items:
        running = max(running, count)
        out.append((le, running))
    return tuple(out)
