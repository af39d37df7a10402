"""Gate evaluation as of one instant: fetch through a provider, judge with the pure rules.

One evaluator serves many releases: ``evaluate_many`` issues one query per gate per
tick for all subjects (``sum by`` the profile's identity labels), not one per release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.verdicts import GateResult

from . import kinds
from . import verdict as v
from .grid import floor_ms
from .profiles import Profile, Resources, get_profile, get_resources
from .provider import Provider, ResourceProvider, Subject
from .spec import GateSet, GateSpec, Kind

# Slices per gate window for the evidence since a breach began: 15s for the built-in 2m.
EVIDENCE_SLICES = 8


@dataclass(frozen=True)
class Release:
    """What the gates judge: a candidate, its baseline, and when the release began.

    ``weights``: every weight the router was told, (when, percent) in order; unknown
    (a backtest without them): empty.
    """

    candidate: Subject
    started: datetime
    baseline: Subject | None = None
    weights: tuple[tuple[datetime, int], ...] = ()

    def weight_at(self, at: datetime) -> tuple[datetime, int] | None:
        """The last weight told at or before ``at`` and since when; None: none yet."""
        told = [w for w in self.weights if w[0] <= at]
        return told[-1] if told else None

    def first_traffic(self, at: datetime) -> datetime | None:
        """When the candidate was first given traffic, as of ``at``; None: not yet (or
        the weights are not known)."""
        return next((t for t, w in self.weights if w > 0 and t <= at), None)


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
        self.resources: Resources = get_resources(gate_set.resources)
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

    @cached_property
    def scrape_s(self) -> float | None:
        """Read once, when evidence is first gathered; None: not known."""
        return self.provider.scrape_interval()

    @property
    def resource_provider(self) -> ResourceProvider | None:
        """The provider, if it measures pods (CPU, memory, pools); None: it does not."""
        return self.provider if isinstance(self.provider, ResourceProvider) else None
