"""Database pool gates: connections in use over the pool's maximum, per pool of each pod.

The mean share in use over the window, of every pool of every candidate pod, from
whichever known exporter the app uses (gates/profiles.py: HikariCP, OpenTelemetry,
Go's database/sql, pgbouncer); the fullest pool decides. An app that exports no pool
metrics makes the gate not applicable; a candidate without them while the baseline
has them is missing data. Under too little traffic an idle pool proves nothing: the
gate is inconclusive, as the request gates are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..profiles import pool_mappings
from ..provider import PoolUse, Subject
from ..spec import GateSpec
from ..verdict import _little_traffic, _result, fmt_pct, fmt_requests, no_data, not_applicable
from .resources import pods_measured

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    window = ev.window(gate, r, at)
    provider, why = pods_measured(ev)
    if provider is None:
        return not_applicable(gate, at, window, why)
    mappings = pool_mappings(gate.pool)
    subjects = [r.candidate] + ([r.baseline] if r.baseline else [])
    ev.queries += 1
    uses = provider.pools(ev.profile, ev.resources, mappings, subjects, window, at)
    cand = uses.get(r.candidate, [])
    if not cand:
        base = uses.get(r.baseline, []) if r.baseline else []
        if base:
            found = ", ".join(sorted({u.mapping for u in base}))
            return no_data(
                gate,
                at,
                window,
                f"the candidate exports no pool metrics, the baseline does ({found})",
            )
        names = ", ".join(m.in_use_metric for m in mappings)
        return not_applicable(
            gate, at, window, f"the app exports no database pool metrics ({names})"
        )
    ev.queries += 1
    counts = ev.provider.counts(ev.profile, [r.candidate], window, at).get(r.candidate)
    requests = counts.requests if counts else 0.0
    return judge_pool(gate, cand, requests, window, at)


def judge_pool(
    gate: GateSpec, uses: Sequence[PoolUse], requests: float, window_s: float, at: datetime
) -> GateResult:
    """The fullest pool against the threshold, once the candidate has had traffic."""
    assert gate.threshold is not None
    if math.isnan(requests) or requests < max(gate.min_requests, 1):
        return _little_traffic(gate, at, window_s, requests, {})
    over = f"over {human_duration(window_s)}"
    judged = [(u.in_use / u.maximum, u) for u in uses if u.maximum > 0 and math.isfinite(u.in_use)]
    if not judged:
        missing = ", ".join(sorted({f"{u.pool or '-'} of {u.pod}" for u in uses}))
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"no pool with both connections in use and a maximum {over} ({missing})",
            at,
            window_s=window_s,
            requests=requests,
        )
    share, worst = max(judged, key=lambda p: p[0])
    breach = gate.comparison.breaches(share, gate.threshold)
    above = sum(1 for s, _ in judged if gate.comparison.breaches(s, gate.threshold))
    name = f"pool {worst.pool!r} of {worst.pod}" if worst.pool else f"the pool of {worst.pod}"
    op = gate.comparison.value if breach else gate.comparison.holds_text
    pools = f"{len(judged)} pool{'s' if len(judged) != 1 else ''}"
    text = (
        f"{name} ({worst.mapping}) {fmt_pct(share)} in use ({worst.in_use:,.1f} of "
        f"{worst.maximum:,.0f} connections, mean) {op} {fmt_pct(gate.threshold)} {over} "
        f"({fmt_requests(requests)}; {above} of {pools} above)"
    )
    return _result(
        gate,
        Verdict.FAIL if breach else Verdict.PASS,
        text,
        at,
        value=share,
        window_s=window_s,
        requests=requests,
    )
