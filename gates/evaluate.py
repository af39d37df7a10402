"""Gate evaluation as of one instant: fetch through a provider, judge with the pure rules.

One evaluator serves many releases: ``evaluate_many`` issues one query per gate per
tick for all subjects (``sum by`` the profile's identity labels), not one per release.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.verdicts import GateResult, Verdict

from . import verdict as v
from .evidence import judge_accumulated
from .grid import floor_ms, grid
from .profiles import Profile, get_profile
from .promql import render
from .provider import Buckets, Counts, Provider, Subject
from .spec import GateSet, GateSpec, Kind, Metric

MW_MIN_SAMPLES = 3
# Slices per gate window for the evidence since a breach began: 15s for the built-in 2m.
EVIDENCE_SLICES = 8


@dataclass(frozen=True)
class Release:
    """What the gates judge: a candidate, its baseline, and when the release began."""

    candidate: Subject
    started: datetime
    baseline: Subject | None = None


class GateEvaluator:
    """Evaluates a gate set for releases at a given instant; stateless between calls."""

    def __init__(
        self,
        gate_set: GateSet,
        provider: Provider,
        *,
        check_windows: bool = True,
        subject: Subject | None = None,
    ):
        """``subject``: a running version of the app (the stable one), whose scrape job's
        interval the windows are checked against; without it, the provider's own guess."""
        self.gate_set = gate_set
        self.provider = provider
        self.profile: Profile = get_profile(gate_set.profile)
        self.queries = 0
        if check_windows:
            self.check_windows(
                provider.scrape_interval()
                if subject is None
                else provider.scrape_interval_for(self.profile, subject)
            )

    def check_windows(self, scrape_s: float | None) -> None:
        """A rate window must hold at least two samples, or rate() sees nothing; so must a
        Mann-Whitney gate's sample interval, since each sample is counted over it."""
        if not scrape_s:
            return
        for g in self.gate_set.gates:
            if g.window < 2 * scrape_s:
                raise InvalidInput(
                    f"gate {g.name!r}: window {human_duration(g.window)} is shorter than two "
                    f"scrape intervals (2 x {human_duration(scrape_s)}); a rate over it would "
                    "see one sample at most"
                )
            if g.kind is Kind.MANN_WHITNEY and g.interval < 2 * scrape_s:
                raise InvalidInput(
                    f"gate {g.name!r}: sample interval {human_duration(g.interval)} is shorter "
                    f"than two scrape intervals (2 x {human_duration(scrape_s)}); a sample "
                    "counted over it would see one scrape at most"
                )

    def scraped(self, endpoints: Sequence[str], at: datetime) -> bool:
        """Whether every one of ``endpoints`` (a version's /metrics) is scraped successfully.

        Not whether its request series exist: client libraries create a labelled counter
        at its first request, and a candidate gets none before the first shift.
        """
        if not endpoints:
            return False
        try:
            up = self.provider.scraped(endpoints, at)
        except GatekeeperError:
            return False
        return all(up.get(e, False) for e in endpoints)

    def evaluate(
        self, release: Release, at: datetime, gates: Sequence[GateSpec] | None = None
    ) -> list[GateResult]:
        return self.evaluate_many([release], at, gates)[release.candidate]

    def evaluate_many(
        self,
        releases: Sequence[Release],
        at: datetime,
        gates: Sequence[GateSpec] | None = None,
    ) -> dict[Subject, list[GateResult]]:
        at = floor_ms(at)  # every window and grid is anchored at a whole millisecond
        out: dict[Subject, list[GateResult]] = {r.candidate: [] for r in releases}
        for gate in gates if gates is not None else self.gate_set.gates:
            for subject, result in self._gate(gate, releases, at).items():
                out[subject].append(result)
        return out

    # -- one gate for many releases -------------------------------------------------------

    def _gate(
        self, gate: GateSpec, releases: Sequence[Release], at: datetime
    ) -> dict[Subject, GateResult]:
        results: dict[Subject, GateResult] = {}
        live: list[Release] = []
        for r in releases:
            elapsed = (at - r.started).total_seconds()
            if elapsed <= 0:
                results[r.candidate] = v.not_started(gate, at)
            else:
                live.append(r)
        if not live:
            return results
        try:
            if gate.query is not None:
                for r in live:
                    results[r.candidate] = self._custom(gate, r, at)
            elif gate.kind is Kind.THRESHOLD and gate.sustained_for > 0:
                results.update(self._sustained(gate, live, at))
            elif gate.kind is Kind.MANN_WHITNEY:
                for r in live:
                    results[r.candidate] = self._mann_whitney(gate, r, at)
            else:
                results.update(self._instant(gate, live, at))
        except GatekeeperError as e:
            for r in live:
                results[r.candidate] = v.provider_error(gate, at, str(e))
        return results

    def _window(self, gate: GateSpec, r: Release, at: datetime) -> float:
        """The gate's window, clipped to the time since the release started."""
        return min(gate.window, (at - r.started).total_seconds())

    def _instant(
        self, gate: GateSpec, live: Sequence[Release], at: datetime
    ) -> dict[Subject, GateResult]:
        # Releases sharing a clipped window share one query.
        by_window: dict[float, list[Release]] = {}
        for r in live:
            by_window.setdefault(round(self._window(gate, r, at), 3), []).append(r)
        results: dict[Subject, GateResult] = {}
        for window, group in by_window.items():
            subjects = sorted(
                {r.candidate for r in group} | {r.baseline for r in group if r.baseline}
            )
            figures = self._figures(gate, subjects, window, at)
            for r in group:
                results[r.candidate] = self._judge_instant(gate, r, figures, window, at)
            results.update(self._accumulate(gate, group, results, at))
        return results

    def _accumulate(
        self,
        gate: GateSpec,
        group: Sequence[Release],
        results: Mapping[Subject, GateResult],
        at: datetime,
    ) -> dict[Subject, GateResult]:
        """Warnings re-judged on the counts since the breach began (gates/evidence.py).

        One range query of slices for the group, and only when one of its releases warns:
        a healthy tick costs nothing more.
        """
        if (
            not gate.evidence_window
            or not gate.confidence
            or gate.metric is not Metric.ERROR_RATIO
            or gate.kind is not Kind.THRESHOLD
        ):
            return {}
        warning = [r for r in group if results[r.candidate].verdict is Verdict.WARN]
        if not warning:
            return {}
        lookback = min(gate.evidence_window, max((at - r.started).total_seconds() for r in warning))
        # Each slice is an increase() of its own: it must hold two samples, like a window.
        slice_s = max(gate.window / EVIDENCE_SLICES, 2 * (self._scrape_s or 0.0))
        span = grid(at, max(0.0, lookback - slice_s), slice_s)
        self.queries += 1
        series = self.provider.counts_range(
            self.profile,
            [r.candidate for r in warning],
            span.step_s,
            span.start,
            span.end,
            span.step_s,
        )
        return {
            r.candidate: judge_accumulated(
                gate,
                results[r.candidate],
                [(t, c) for t, c in series.get(r.candidate, []) if t > r.started],
                span.end,
                span.step_s,
            )
            for r in warning
        }

    @cached_property
    def _scrape_s(self) -> float | None:
        """Read once, when evidence is first gathered; None: not known."""
        return self.provider.scrape_interval()

    def _figures(
        self, gate: GateSpec, subjects: Sequence[Subject], window: float, at: datetime
    ) -> Mapping[Subject, Counts | Buckets]:
        self.queries += 1
        if gate.metric is Metric.LATENCY:
            return self.provider.buckets(self.profile, subjects, window, at)
        return self.provider.counts(self.profile, subjects, window, at)

    def _judge_instant(
        self,
        gate: GateSpec,
        r: Release,
        figures: Mapping[Subject, Counts | Buckets],
        window: float,
        at: datetime,
    ) -> GateResult:
        cand = figures.get(r.candidate)
        if gate.kind is Kind.BASELINE:
            if r.baseline is None:
                return v.not_applicable(gate, at, window, "no baseline version named")
            base = figures.get(r.baseline)
            return v.judge_baseline(gate, _value(gate, cand), _value(gate, base), at, window)
        if gate.metric is Metric.LATENCY:
            return v.judge_latency(gate, cand if isinstance(cand, tuple) else None, at, window)
        return v.judge_error_ratio(gate, cand if isinstance(cand, Counts) else None, at, window)

    def _sustained(
        self, gate: GateSpec, live: Sequence[Release], at: datetime
    ) -> dict[Subject, GateResult]:
        span = grid(at, gate.sustained_for, gate.interval)
        self.queries += 1
        series = self.provider.counts_range(
            self.profile,
            [r.candidate for r in live],
            gate.window,
            span.start,
            span.end,
            span.step_s,
        )
        points = {
            r.candidate: [(t, c) for t, c in series.get(r.candidate, []) if t > r.started]
            for r in live
        }
        # The confirmation is one exact window, asked only for the releases it can decide.
        breaching = [r.candidate for r in live if _breaching_now(gate, points[r.candidate], at)]
        confirm: Mapping[Subject, Counts] = {}
        if breaching:
            self.queries += 1
            confirm = self.provider.counts(self.profile, breaching, gate.confirm_s, at)
        return {
            r.candidate: v.judge_sustained(
                gate, points[r.candidate], at, gate.window, confirm.get(r.candidate)
            )
            for r in live
        }

    def _custom(self, gate: GateSpec, r: Release, at: datetime) -> GateResult:
        assert gate.query is not None
        window = self._window(gate, r, at)
        if gate.kind is Kind.BASELINE:
            if r.baseline is None:
                return v.not_applicable(gate, at, window, "no baseline version named")
            cand = self._custom_side(gate, r.candidate, r.baseline, window, at)
            base = self._custom_side(gate, r.baseline, r.baseline, window, at)
            return v.judge_baseline(gate, cand, base, at, window)
        variables = _variables(r.candidate, window, r.baseline)
        self.queries += 1
        series = self.provider.query(render(gate.query, variables), at)
        requests: float | None = None
        if gate.requests_query is not None:
            self.queries += 1
            got = self.provider.query(render(gate.requests_query, variables), at)
            requests = sum(value for _, value in got) if got else 0.0
        return v.judge_series(gate, series, requests, at, window)

    def _custom_side(
        self, gate: GateSpec, s: Subject, baseline: Subject, window: float, at: datetime
    ) -> tuple[float, float] | None:
        """One side of a custom comparison: (value, requests) over every series.

        The value is the mean of the series weighted by each one's requests (the
        requests query's series with the same labels), as summing counts weights a
        ratio; equal weights when the requests cannot be matched to the series.
        Without a requests query the traffic is not known and counts as enough.
        """
        assert gate.query is not None
        variables = _variables(s, window, baseline)
        self.queries += 1
        series = [
            (labels, value)
            for labels, value in self.provider.query(render(gate.query, variables), at)
            if not math.isnan(value)
        ]
        requests = math.inf
        weights: dict[tuple[tuple[str, str], ...], float] = {}
        if gate.requests_query is not None:
            self.queries += 1
            got = self.provider.query(render(gate.requests_query, variables), at)
            requests = sum(value for _, value in got if not math.isnan(value))
            weights = {_label_key(labels): value for labels, value in got}
        if not series:
            return None if requests == math.inf or requests <= 0 else (math.nan, requests)
        matched = [weights.get(_label_key(labels)) for labels, _ in series]
        if all(w is not None and w >= 0 for w in matched) and sum(w or 0.0 for w in matched) > 0:
            total = sum(w or 0.0 for w in matched)
            value = sum((w or 0.0) * x for w, (_, x) in zip(matched, series, strict=True)) / total
        else:
            value = sum(x for _, x in series) / len(series)
        return value, requests

    def _mann_whitney(self, gate: GateSpec, r: Release, at: datetime) -> GateResult:
        from .mannwhitney import Classification, classify

        window = self._window(gate, r, at)
        if r.baseline is None:
            return v.not_applicable(gate, at, window, "no baseline version named")
        if gate.metric is not Metric.ERROR_RATIO:
            raise InvalidInput(f"gate {gate.name!r}: mann_whitney gates judge error_ratio samples")
        # Non-overlapping samples of one interval each, the last one ending at ``at``.
        span = grid(at, max(0.0, window - gate.interval), gate.interval)
        self.queries += 1
        series = self.provider.counts_range(
            self.profile,
            [r.candidate, r.baseline],
            span.step_s,
            span.start,
            span.end,
            span.step_s,
        )

        def samples(s: Subject) -> tuple[list[float], float]:
            pts = [c for t, c in series.get(s, []) if t > r.started and c.requests > 0]
            return [c.errors / c.requests for c in pts], sum(c.requests for c in pts)

        cand, cand_req = samples(r.candidate)
        base, base_req = samples(r.baseline)
        need = f"need {MW_MIN_SAMPLES} samples and {gate.min_requests:,} requests"
        if cand_req < gate.min_requests or len(cand) < MW_MIN_SAMPLES:
            return v.no_data(
                gate,
                at,
                window,
                f"too few candidate samples ({len(cand)} with {cand_req:,.0f} requests; {need})",
            )
        if base_req < gate.min_requests or len(base) < MW_MIN_SAMPLES:
            return v.not_applicable(
                gate,
                at,
                window,
                f"too few baseline samples ({len(base)} with {base_req:,.0f} requests; {need}) "
                f"over {human_duration(window)}; the absolute gates judge the candidate",
            )
        mw = classify(cand, base, metric=gate.subject, alpha=gate.alpha, min_effect=gate.min_effect)
        verdict = Verdict.FAIL if mw.classification is Classification.HIGH else Verdict.PASS
        return GateResult(
            gate=gate.name,
            verdict=verdict,
            reason=f"{gate.name}: {mw.classification.value}: {mw.reason} over "
            f"{human_duration(window)} ({cand_req:,.0f} requests)",
            at=at,
            value=mw.result.estimate,
            threshold=gate.alpha,
            window_s=window,
            requests=cand_req,
        )


def _value(gate: GateSpec, fig: Counts | Buckets | None) -> tuple[float, float] | None:
    """(value, requests) of one side of a baseline comparison."""
    if fig is None:
        return None
    if isinstance(fig, Counts):
        return v.error_ratio(fig), fig.requests
    if not fig:
        return None
    return v.quantile_from_buckets(gate.quantile, fig), fig[-1][1]


def _breaching_now(gate: GateSpec, points: Sequence[tuple[datetime, Counts]], at: datetime) -> bool:
    """Whether the point at ``at`` breaches with enough traffic to count."""
    now = [c for t, c in points if t >= at - timedelta(milliseconds=1)]
    if not now or gate.threshold is None:
        return False
    c = now[-1]
    return c.requests >= max(gate.min_requests, 1) and gate.comparison.breaches(
        v.error_ratio(c), gate.threshold
    )


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _variables(s: Subject, window: float, baseline: Subject | None) -> dict[str, str | float]:
    return {
        "app": s.app,
        "namespace": s.namespace,
        "version": s.version,
        "baseline_version": baseline.version if baseline else "",
        "workload": f"{s.app}-{s.version}",
        "window": window,
    }
