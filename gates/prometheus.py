"""The Prometheus provider: PromQL through prometheus-api-client, retried with tenacity.

Connection errors and 5xx are retried with bounded, jittered exponential backoff; a
query that keeps failing raises ProviderUnavailable, which the evaluator turns into
an inconclusive measurement, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import yaml
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from urllib3.util.retry import Retry

from gatekeeper.domain.durations import parse_duration, promql_duration
from gatekeeper.domain.errors import ProviderError, ProviderUnavailable

from . import resource_promql as rq
from .profiles import PoolMapping, Profile, Resources, is_error_code
from .promql import regex_matcher, selector
from .provider import Buckets, Counts, LabeledValue, PodSeries, PoolUse, Subject, Usage

T = TypeVar("T")


def _retrying(attempts: int, max_wait: float) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return retry(
        retry=retry_if_exception_type(ProviderUnavailable),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_wait * attempts),
        wait=wait_random_exponential(multiplier=0.1, max=max_wait),
        reraise=True,
    )


class PrometheusProvider:
    """Reads the profile's metrics from a Prometheus server."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        attempts: int = 4,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = PrometheusConnect(
            url=self.url,
            disable_ssl=True,
            retry=Retry(total=0, raise_on_status=False),
            timeout=timeout_s,
        )
        self._call = _retrying(attempts, max_backoff_s)(self._call_once)
        self.calls = 0

    def close(self) -> None:
        self._client._session.close()

    # -- transport ------------------------------------------------------------------------

    def _call_once(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as e:
            raise ProviderUnavailable(f"prometheus at {self.url}: {type(e).__name__}: {e}") from e
        except PrometheusApiClientException as e:
            text = str(e)
            if text.startswith("HTTP Status Code 5"):
                raise ProviderUnavailable(f"prometheus at {self.url}: {text[:300]}") from e
            raise ProviderError(f"prometheus at {self.url}: {text[:300]}") from e

    def _instant(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            self._client.custom_query, promql, params={"time": f"{at.timestamp():.3f}"}
        )
        return result

    def _range(
        self, promql: str, start: datetime, end: datetime, step_s: float
    ) -> list[dict[str, Any]]:
        # start and end go as params too: the client rounds them to whole seconds.
        result: list[dict[str, Any]] = self._call(
            self._client.custom_query_range,
            promql,
            start_time=start,
            end_time=end,
            step=f"{round(step_s * 1000) / 1000:.3f}",  # whole ms: ":g" keeps 6 digits
            params={"start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"},
        )
        return result

    # -- provider protocol ----------------------------------------------------------------

    def scrape_interval(self) -> float | None:
        """Seconds between samples of an app not named: the largest interval of any scrape
        job (any of them may be the app's), else the global one; None if the config
        Prometheus serves cannot be read."""
        intervals = self._scrape_intervals()
        if intervals is None:
            return None
        global_s, per_job = intervals
        return max(per_job.values(), default=global_s)

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        """Seconds between samples of ``subject``'s series: its scrape job's interval.

        The job is the ``job`` label of the profile's request counter for the subject
        (``count by (job)`` now; name a version that is running, such as the stable one),
        its interval the job's ``scrape_interval`` in the config Prometheus serves at
        /api/v1/status/config (a job without one has the global one, and without that
        Prometheus's default, 1m). Several jobs: the largest of their intervals. No
        series, a failing query, or a ``job`` the config does not name (relabeled,
        federated): the largest interval of any job, as ``scrape_interval``, since a
        limit too low would let a window through that sees one sample.
        """
        intervals = self._scrape_intervals()
        if intervals is None:
            return None
        global_s, per_job = intervals
        fallback = max(per_job.values(), default=global_s)
        promql = f"count by (job) ({profile.requests_metric}{{{selector(profile, [subject])}}})"
        try:
            rows = self._instant(promql, datetime.now(UTC))
        except (ProviderUnavailable, ProviderError):
            return fallback
        jobs = {str(row["metric"].get("job", "")) for row in rows}
        if not jobs or not jobs <= per_job.keys():
            return fallback
        return max(per_job[job] for job in jobs)

    def _scrape_intervals(self) -> tuple[float, dict[str, float]] | None:
        """(global scrape interval, scrape interval per job name) from the served config."""
        try:
            resp = self._call(self._client._session.get, f"{self.url}/api/v1/status/config")
            config = yaml.safe_load(resp.json()["data"]["yaml"]) or {}
            global_s = parse_duration(
                str((config.get("global") or {}).get("scrape_interval", "1m"))
            )
            per_job = {
                str(job["job_name"]): (
                    parse_duration(str(job["scrape_interval"]))
                    if job.get("scrape_interval")
                    else global_s
                )
                for job in config.get("scrape_configs") or []
            }
        except (
            ProviderUnavailable,
            ProviderError,
            KeyError,
            TypeError,
            AttributeError,
            ValueError,
            yaml.YAMLError,
        ):
            return None
        return global_s, per_job

    def healthy(self) -> bool:
        """The query API answers. Not ``GET /``: Prometheus 3 answers it with a redirect to
        its web UI, which a server built without the UI answers with 500."""
        try:
            return bool(self._client.custom_query("vector(1)"))
        except Exception:
            return False

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        """``up`` is 1 for the endpoint's target (its ``instance`` label) as of ``at``."""
        if not endpoints:
            return {}
        query = f"max by (instance) (up{{{regex_matcher('instance', endpoints)}}})"
        rows = self._instant(query, at)
        up = {row["metric"].get("instance", ""): float(row["value"][1]) for row in rows}
        return {e: up.get(e) == 1.0 for e in endpoints}

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        rows = self._instant(counts_query(profile, subjects, window_s), at)
        return _sum_counts(profile, subjects, rows, lambda row: [row["value"]])[0]

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        if abs(window_s - step_s) < 1e-6:
            rows = self._tiles(profile, subjects, start, end, step_s)
        else:
            rows = self._range(counts_query(profile, subjects, window_s), start, end, step_s)
        per_time = _sum_counts(profile, subjects, rows, lambda row: row["values"])[1]
        return {
            s: [(datetime.fromtimestamp(ts, UTC), c) for ts, c in sorted(points.items())]
            for s, points in per_time.items()
        }

    def _tiles(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> list[dict[str, Any]]:
        """Per-series counts over adjacent slices, one ending at each step from ``start`` to
        ``end``: the difference of each counter's latest sample at consecutive steps (after
        a reset, the new value), so the slices add up to what the counters counted.

        ``increase()`` over adjacent ranges leaves out the stretch between one range's last
        sample and the next range's first, and extrapolates over it: with two scrapes in a
        slice, half of the requests it reports were never seen, and a bound computed on
        them is as tight as twice the evidence would make it (a steady 3% candidate showed
        7.5% in 402 requests, "significant" at 95%).
        """
        query = f"{profile.requests_metric}{{{selector(profile, subjects)}}}"
        before = datetime.fromtimestamp(start.timestamp() - step_s, UTC)
        out = []
        for row in self._range(query, before, end, step_s):
            steps: list[list[Any]] = []
            last: float | None = None
            for ts, raw in row["values"]:
                value = float(raw)
                if math.isnan(value):
                    continue
                if last is not None:
                    steps.append([ts, value - last if value >= last else value])
                last = value
            out.append({"metric": row["metric"], "values": steps})
        return out

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        rows = self._instant(buckets_query(profile, subjects, window_s), at)
        ids = _identity_index(profile, subjects)
        acc: dict[Subject, dict[float, float]] = {}
        for row in rows:
            subject = ids.get(_identity(profile, row["metric"]))
            value = float(row["value"][1])
            le_text = row["metric"].get("le")
            if subject is None or le_text is None or math.isnan(value):
                continue
            le = float(le_text) * profile.duration_unit_s
            hist = acc.setdefault(subject, {})
            hist[le] = hist.get(le, 0.0) + value
        out: dict[Subject, Buckets] = {}
        for subject, hist in acc.items():
            if math.inf not in hist:
                continue  # a histogram without +Inf is not a histogram
            out[subject] = _monotone(sorted(hist.items()))
        return out

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        return [(dict(row["metric"]), float(row["value"][1])) for row in self._instant(promql, at)]

    # -- resources: the pods behind each version (gates/resource_promql.py) ---------------

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
        promql = rq.requests_by_pod(profile, resources, subjects, window_s)
        rows = self._range(promql, start, end, step_s)
        ids = _identity_index(profile, subjects)
        out: dict[Subject, PodSeries] = {}
        for row in rows:
            subject = ids.get(_identity(profile, row["metric"]))
            if subject is None:
                continue
            pod = str(row["metric"].get(resources.pod_label, ""))
            _add_points(out.setdefault(subject, {}), pod, row["values"])
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
        promql = rq.usage(profile, resources, what, subjects, window_s)
        rows = self._range(promql, start, end, step_s)
        out: dict[Subject, PodSeries] = {}
        for row in rows:
            found = _pod_of(profile, resources, subjects, row["metric"])
            if found is not None:
                _add_points(out.setdefault(found[0], {}), found[1], row["values"])
        return {s: pods for s, pods in out.items() if pods}

    def pools(
        self,
        profile: Profile,
        resources: Resources,
        mappings: Sequence[PoolMapping],
        subjects: Sequence[Subject],
        window_s: float,
        at: datetime,
    ) -> dict[Subject, list[PoolUse]]:
        """One query for which pool metrics exist at all; two per exporter found."""
        present = {
            str(row["metric"].get("__name__", ""))
            for row in self._instant(rq.pool_names(profile, resources, mappings, subjects), at)
        }
        out: dict[Subject, list[PoolUse]] = {}
        for m in mappings:
            if m.in_use_metric not in present and m.max_metric not in present:
                continue
            in_use = self._pool_rows(profile, resources, subjects, m, window_s, at, maximum=False)
            maxima = self._pool_rows(profile, resources, subjects, m, window_s, at, maximum=True)
            for (subject, pod, pool), value in in_use.items():
                out.setdefault(subject, []).append(
                    PoolUse(m.name, pod, pool, value, maxima.get((subject, pod, pool), math.nan))
                )
            for (subject, pod, pool), value in maxima.items():
                if (subject, pod, pool) not in in_use:
                    out.setdefault(subject, []).append(PoolUse(m.name, pod, pool, math.nan, value))
        return out

    def _pool_rows(
        self,
        profile: Profile,
        resources: Resources,
        subjects: Sequence[Subject],
        mapping: PoolMapping,
        window_s: float,
        at: datetime,
        *,
        maximum: bool,
    ) -> dict[tuple[Subject, str, str], float]:
        build = rq.pool_max if maximum else rq.pool_in_use
        key = mapping.max_key if maximum else mapping.in_use_key
        rows = self._instant(build(profile, resources, mapping, subjects, window_s), at)
        out: dict[tuple[Subject, str, str], float] = {}
        for row in rows:
            found = _pod_of(profile, resources, subjects, row["metric"])
            value = float(row["value"][1])
            if found is None or math.isnan(value):
                continue
            out[(found[0], found[1], str(row["metric"].get(key, "")))] = value
        return out


def counts_query(profile: Profile, subjects: Sequence[Subject], window_s: float) -> str:
    by = ", ".join((*profile.identity_labels, profile.code_label))
    return (
        f"sum by ({by}) (increase({profile.requests_metric}"
        f"{{{selector(profile, subjects)}}}[{promql_duration(window_s)}]))"
    )


def buckets_query(profile: Profile, subjects: Sequence[Subject], window_s: float) -> str:
    by = ", ".join((*profile.identity_labels, "le"))
    return (
        f"sum by ({by}) (increase({profile.duration_bucket_metric}"
        f"{{{selector(profile, subjects)}}}[{promql_duration(window_s)}]))"
    )


def _add_points(pods: PodSeries, pod: str, values: list[list[Any]]) -> None:
    """A range row's points added to ``pod``'s (several rows of one pod are summed)."""
    merged = dict(pods.get(pod, []))
    for ts, raw in values:
        value = float(raw)
        if math.isnan(value):
            continue
        t = datetime.fromtimestamp(float(ts), UTC)
        merged[t] = merged.get(t, 0.0) + value
    if merged:
        pods[pod] = sorted(merged.items())


def _pod_of(
    profile: Profile,
    resources: Resources,
    subjects: Sequence[Subject],
    labels: Mapping[str, str],
) -> tuple[Subject, str] | None:
    """(version, pod) of a per-pod row, by the identity labels joined onto it."""
    subject = _identity_index(profile, subjects).get(_identity(profile, labels))
    return None if subject is None else (subject, str(labels.get(resources.pod_label, "")))


def _identity(profile: Profile, labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(label, "") for label in profile.identity_labels)


def _identity_index(
    profile: Profile, subjects: Sequence[Subject]
) -> dict[tuple[str, ...], Subject]:
    out = {}
    for s in subjects:
        values = profile.selector_values(s.app, s.namespace, s.version)
        out[tuple(values[label] for label in profile.identity_labels)] = s
    return out


def _sum_counts(
    profile: Profile,
    subjects: Sequence[Subject],
    rows: list[dict[str, Any]],
    points: Callable[[dict[str, Any]], list[list[Any]]],
) -> tuple[dict[Subject, Counts], dict[Subject, dict[float, Counts]]]:
    """Requests and 5xx per subject (and per timestamp), from per-code series."""
    ids = _identity_index(profile, subjects)
    per_time: dict[Subject, dict[float, Counts]] = {}
    for row in rows:
        subject = ids.get(_identity(profile, row["metric"]))
        if subject is None:
            continue  # a regex matcher also matches combinations nobody asked for
        is_error = is_error_code(row["metric"].get(profile.code_label, ""))
        slot = per_time.setdefault(subject, {})
        for ts, raw in points(row):
            value = float(raw)
            if math.isnan(value):
                continue
            prev = slot.get(float(ts), Counts(0.0, 0.0))
            slot[float(ts)] = Counts(
                requests=prev.requests + value, errors=prev.errors + (value if is_error else 0.0)
            )
    latest = {s: pts[max(pts)] for s, pts in per_time.items() if pts}
    return latest, per_time


def _monotone(items: list[tuple[float, float]]) -> Buckets:
    """Cumulative counts never decrease with le; extrapolated increase() can jitter them."""
    out: list[tuple[float, float]] = []
    running = 0.0
    for le, count in items:
        running = max(running, count)
        out.append((le, running))
    return tuple(out)
