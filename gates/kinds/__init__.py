"""Gate kinds, one module each, found by what a gate spec says.

Each kind's ``evaluate(evaluator, gate, releases, at)`` fetches what it needs through
the evaluator's provider (one query per gate per tick for all releases where it can)
and judges with pure rules; it returns one result per release's candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.domain.verdicts import GateResult

from ..provider import Subject
from ..spec import GateSpec, Kind, Metric
from . import custom, growth, instant, mann_whitney, pool, resources, sustained, traffic

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

KindFn = Callable[
    ["GateEvaluator", GateSpec, Sequence["Release"], datetime], dict[Subject, GateResult]
]


KINDS: dict[str, KindFn] = {
    "custom": custom.evaluate,
    "sustained": sustained.evaluate,
    Kind.MANN_WHITNEY.value: mann_whitney.evaluate,
    Kind.THRESHOLD.value: instant.evaluate,
    Kind.BASELINE.value: instant.evaluate,
    Kind.TRAFFIC.value: traffic.evaluate,
    Kind.GROWTH.value: growth.evaluate,
    "resources": resources.evaluate,
    "pool": pool.evaluate,
}


def kind_of(gate: GateSpec) -> str:
    """custom (a query), sustained (a threshold held for a time), resources (cpu or memory
    against the baseline), pool (db_pool), or the spec's kind."""
    if gate.query is not None:
        return "custom"
    if gate.metric in (Metric.CPU, Metric.MEMORY) and gate.kind is Kind.BASELINE:
        return "resources"
    if gate.metric is Metric.DB_POOL:
        return "pool"
    if gate.kind is Kind.THRESHOLD and gate.sustained_for > 0:
        return "sustained"
    return gate.kind.value


def evaluator_for(gate: GateSpec) -> KindFn:
    return KINDS[kind_of(gate)]
