"""Gate evaluation as of one instant: fetch through a provider, judge with the pure rules.

One evaluator serves many releases: ``evaluate_many`` issues one query per gate per
tick for all subjects (``sum by`` the profile's identity labels), not one per release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.verdicts import GateResult, Verdict

from . import kinds
from . import verdict as v
from .evidence import judge_accumulated
from .grid import floor_ms, grid
from .kinds.baseline import judge_baseline
from .profiles import Profile, get_profile
from .provider import Buckets, Counts, Provider, Subject
from .spec import GateSet, GateSpec, Kind, Metric

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
            results.update(kinds.evaluator_for(gate)(self, gate, live, at))
        except GatekeeperError as e:
            for r in live:
                results[r.candidate] = v.provider_error(gate, at, str(e))
        return results

    def window(self, gate: GateSpec, r: Release, at: datetime) -> float:
        """The gate's window, clipped to the time since the release started."""
        return min(gate.window, (at - r.started).total_seconds())

    def instant(
        self, gate: GateSpec, live: Sequence[Release], at: datetime
    ) -> dict[Subject, GateResult]:
        # Releases sharing a clipped window share one query.
        by_window: dict[float, list[Release]] = {}
        for r in live:
            by_window.setdefault(round(self.window(gate, r, at), 3), []).append(r)
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
            return judge_baseline(gate, _value(gate, cand), _value(gate, base), at, window)
        if gate.metric is Metric.LATENCY:
            return v.judge_latency(gate, cand if isinstance(cand, tuple) else None, at, window)
        return v.judge_error_ratio(gate, cand if isinstance(cand, Counts) else None, at, window)


def _value(gate: GateSpec, fig: Counts | Buckets | None) -> tuple[float, float] | None:
    """(value, requests) of one side of a baseline comparison."""
    if fig is None:
        return None
    if isinstance(fig, Counts):
        return v.error_ratio(fig), fig.requests
    if not fig:
        return None
    return v.quantile_from_buckets(gate.quantile, fig), fig[-1][1]
