"""Gate evaluation as of one instant: fetch through a provider, judge with the pure rules.

One evaluator serves many releases: ``evaluate_many`` issues one query per gate per
tick for all subjects (``sum by`` the profile's identity labels), not one per release.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.verdicts import GateResult, Verdict

from . import verdict as v
from .profiles import Profile, get_profile
from .promql import render
from .provider import Buckets, Counts, Provider, Subject
from .spec import GateSet, GateSpec, Kind, Metric


@dataclass(frozen=True)
class Release:
    """What the gates judge: a candidate, its baseline, and when the release began."""

    candidate: Subject
    started: datetime
    baseline: Subject | None = None


class GateEvaluator:
    """Evaluates a gate set for releases at a given instant; stateless between calls."""

    def __init__(self, gate_set: GateSet, provider: Provider, *, check_windows: bool = True):
        self.gate_set = gate_set
        self.provider = provider
        self.profile: Profile = get_profile(gate_set.profile)
        self.queries = 0
        if check_windows:
            self.check_windows(provider.scrape_interval())

    def check_windows(self, scrape_s: float | None) -> None:
        """A rate window must hold at least two samples, or rate() sees nothing."""
        if not scrape_s:
            return
        for g in self.gate_set.gates:
            if g.window < 2 * scrape_s:
                raise InvalidInput(
                    f"gate {g.name!r}: window {human_duration(g.window)} is shorter than two "
                    f"scrape intervals (2 x {human_duration(scrape_s)}); a rate over it would "
                    "see one sample at most"
                )

    def observed(self, subject: Subject, at: datetime) -> bool:
        """Whether the provider has the subject's request counter yet (a new version's
        target must be discovered and scraped twice before any gate can see it)."""
        scrape = self.provider.scrape_interval() or 1.0
        try:
            return subject in self.provider.counts(self.profile, [subject], 3 * scrape, at)
        except GatekeeperError:
            return False

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
        return results

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
                return v.no_data(gate, at, window, "no baseline version named")
            base = figures.get(r.baseline)
            return v.judge_baseline(gate, _value(gate, cand), _value(gate, base), at, window)
        if gate.metric is Metric.LATENCY:
            return v.judge_latency(gate, cand if isinstance(cand, tuple) else None, at, window)
        return v.judge_error_ratio(gate, cand if isinstance(cand, Counts) else None, at, window)

    def _sustained(
        self, gate: GateSpec, live: Sequence[Release], at: datetime
    ) -> dict[Subject, GateResult]:
        step = _range_step(gate)
        # Far enough back for the streak and for every window the confirmation sums.
        confirm_span = gate.window * (max(1, math.ceil(gate.confirm_s / gate.window - 1e-9)) - 1)
        start = at - timedelta(seconds=max(gate.sustained_for, confirm_span))
        self.queries += 1
        series = self.provider.counts_range(
            self.profile, [r.candidate for r in live], gate.window, start, at, step
        )
        results = {}
        for r in live:
            points = [(t, c) for t, c in series.get(r.candidate, []) if t > r.started]
            results[r.candidate] = v.judge_sustained(gate, points, at, gate.window)
        return results

    def _custom(self, gate: GateSpec, r: Release, at: datetime) -> GateResult:
        assert gate.query is not None
        window = self._window(gate, r, at)
        variables = _variables(r.candidate, window, r.baseline)
        self.queries += 1
        series = self.provider.query(render(gate.query, variables), at)
        requests: float | None = None
        if gate.requests_query is not None:
            self.queries += 1
            got = self.provider.query(render(gate.requests_query, variables), at)
            requests = sum(value for _, value in got) if got else 0.0
        if gate.kind is Kind.BASELINE:
            if r.baseline is None:
                return v.no_data(gate, at, window, "no baseline version named")
            self.queries += 1
            base_series = self.provider.query(
                render(gate.query, _variables(r.baseline, window, r.baseline)), at
            )
            cand = (
                (series[0][1], requests if requests is not None else math.inf) if series else None
            )
            base = (base_series[0][1], math.inf) if base_series else None
            return v.judge_baseline(gate, cand, base, at, window)
        return v.judge_series(gate, series, requests, at, window)

    def _mann_whitney(self, gate: GateSpec, r: Release, at: datetime) -> GateResult:
        from .mannwhitney import Classification, classify

        window = self._window(gate, r, at)
        if r.baseline is None:
            return v.no_data(gate, at, window, "no baseline version named")
        if gate.metric is not Metric.ERROR_RATIO:
            raise InvalidInput(f"gate {gate.name!r}: mann_whitney gates judge error_ratio samples")
        step = gate.interval
        start = at - timedelta(seconds=window)
        self.queries += 1
        series = self.provider.counts_range(
            self.profile, [r.candidate, r.baseline], step, start, at, step
        )

        def samples(s: Subject) -> tuple[list[float], float]:
            pts = [c for t, c in series.get(s, []) if t > r.started and c.requests > 0]
            return [c.errors / c.requests for c in pts], sum(c.requests for c in pts)

        cand, cand_req = samples(r.candidate)
        base, base_req = samples(r.baseline)
        if min(cand_req, base_req) < gate.min_requests or min(len(cand), len(base)) < 3:
            return v.no_data(
                gate,
                at,
                window,
                f"too few samples (candidate {len(cand)} with {cand_req:,.0f} requests, "
                f"baseline {len(base)} with {base_req:,.0f}; need 3 samples and "
                f"{gate.min_requests:,} requests each)",
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


def _variables(s: Subject, window: float, baseline: Subject | None) -> dict[str, str | float]:
    return {
        "app": s.app,
        "namespace": s.namespace,
        "version": s.version,
        "baseline_version": baseline.version if baseline else "",
        "workload": f"{s.app}-{s.version}",
        "window": window,
    }


def _range_step(gate: GateSpec) -> float:
    """The gate's interval, shrunk so that it divides the window and the sustain period."""
    ms = [round(x * 1000) for x in (gate.window, gate.sustained_for)]
    step = round(gate.interval * 1000)
    g = math.gcd(*ms)
    while g % step:
        step -= 1
    return max(step, 1) / 1000
