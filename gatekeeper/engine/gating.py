"""The engine's door to the gates: build providers and evaluators, run backtests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from gatekeeper.domain.errors import GatekeeperError
from gates.backtest import BacktestResult, backtest
from gates.evaluate import GateEvaluator, Release
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import GateSet, default_gates, load_gate_set


def gate_set_from(path: Path | None, profile: str = "http") -> GateSet:
    return load_gate_set(path) if path is not None else default_gates(profile)


def run_backtest(
    *,
    prometheus_url: str,
    app: str,
    version: str,
    namespace: str,
    baseline_version: str | None,
    gates_file: Path | None,
    start: datetime,
    end: datetime,
    step: timedelta,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    gate_set = gate_set_from(gates_file)
    provider = PrometheusProvider(prometheus_url)
    if not provider.healthy():
        provider.close()
        raise GatekeeperError(f"prometheus at {prometheus_url} does not answer")
    try:
        # Windows are checked against the scrape interval of today's config, which
        # may not be the one the history was scraped with: only live runs enforce it.
        evaluator = GateEvaluator(gate_set, provider, check_windows=False)
        release = Release(
            candidate=Subject(app=app, version=version, namespace=namespace),
            started=start,
            baseline=(
                Subject(app=app, version=baseline_version, namespace=namespace)
                if baseline_version
                else None
            ),
        )
        return backtest(evaluator, release, end, step, progress=progress)
    finally:
        provider.close()
