"""The abort gate accumulates evidence over a breach, against a real Prometheus.

6% 5xx at 10 requests/s is 1,200 requests in the abort gate's 2m window: never enough to
tell 6% from 5% at 95%. Judged on the counts since the breach began, it fails within
minutes; judged on the window alone, only the 15m sustained gate would catch it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Decision, GateResult, Verdict
from gates import verdict
from gates.backtest import backtest
from gates.evaluate import GateEvaluator, Release
from gates.profiles import get_profile
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import GateSet, default_gates
from tests.support.history import Traffic, openmetrics, series
from tests.support.prom import LocalPrometheus as PrometheusServer
from tests.support.prom import backfill, prometheus

pytestmark = pytest.mark.integration

ONSET_S = 60  # a healthy minute first, so the breach has a start to find
CANDIDATE = Subject("slow6", "v2")


def _traffic(t: float) -> Traffic:
    return Traffic(rps=10, errors=0.005 if t <= ONSET_S else 0.06, client_errors=0.10)


@pytest.fixture(scope="module")
def six_percent_prometheus(
    history_start: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    data = tmp_path_factory.mktemp("prom-abort-evidence") / "data"
    backfill(data, openmetrics([series("slow6", "v2", history_start.timestamp(), 900, _traffic)]))
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        yield server


def _backtest(server: PrometheusServer, start: datetime, gates: GateSet):
    provider = PrometheusProvider(server.url)
    try:
        return backtest(
            GateEvaluator(gates, provider),
            Release(candidate=CANDIDATE, started=start),
            start + timedelta(minutes=10),
            timedelta(seconds=15),
        )
    finally:
        provider.close()


def test_abort_fails_six_percent_at_10rps_within_4_minutes_of_the_onset(
    six_percent_prometheus: PrometheusServer, history_start: datetime
) -> None:
    result = _backtest(six_percent_prometheus, history_start, default_gates())
    assert result.decision is Decision.ROLLBACK
    assert result.decided_at is not None
    onset = history_start + timedelta(seconds=ONSET_S)
    assert timedelta(minutes=2) < result.decided_at - onset <= timedelta(minutes=4)
    first_fail = next(r for r in result.timeline if r.verdict is Verdict.FAIL)
    assert first_fail.gate == "abort"
    assert "> 5% over 2m" in first_fail.reason
    assert "since the breach began" in first_fail.reason
    assert "significant at 95%" in first_fail.reason


def test_the_window_alone_only_warns_on_the_same_history(
    six_percent_prometheus: PrometheusServer, history_start: datetime
) -> None:
    gates = default_gates()
    window_only = GateSet(
        profile=gates.profile,
        gates=tuple(
            g.model_copy(update={"evidence_window": 0.0}) if g.name == "abort" else g
            for g in gates.gates
        ),
    )
    result = _backtest(six_percent_prometheus, history_start, window_only)
    abort = [r for r in result.timeline if r.gate == "abort"]
    assert not any(r.verdict is Verdict.FAIL for r in abort)
    assert any(r.verdict is Verdict.WARN and "not significant" in r.reason for r in abort)
    assert result.decision is Decision.HOLD


# A healthy 1% candidate at 1 request/s now and then shows a 2m cluster like 10 5xx in 108
# requests (Wilson lower bound 5.6% at a fixed 95%): the sequential boundary asks 12.
CLUSTER = Subject("cluster1", "v2")
CLUSTER_FROM_S, CLUSTER_TO_S = 300, 420


def _cluster_traffic(t: float) -> Traffic:
    inside = CLUSTER_FROM_S < t <= CLUSTER_TO_S
    return Traffic(rps=0.9, errors=10 / 108 if inside else 0.01, client_errors=0.10)


@pytest.fixture(scope="module")
def cluster_prometheus(
    history_start: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    data = tmp_path_factory.mktemp("prom-abort-cluster") / "data"
    backfill(
        data,
        openmetrics([series("cluster1", "v2", history_start.timestamp(), 900, _cluster_traffic)]),
    )
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        yield server


def test_a_healthy_candidates_2m_cluster_warns_and_never_aborts(
    cluster_prometheus: PrometheusServer, history_start: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = PrometheusProvider(cluster_prometheus.url)
    try:

        def run() -> list[GateResult]:
            result = backtest(
                GateEvaluator(default_gates(), provider),
                Release(candidate=CLUSTER, started=history_start),
                history_start + timedelta(minutes=12),
                timedelta(seconds=15),
            )
            return [r for r in result.timeline if r.gate == "abort"]

        abort = run()
        assert not any(r.verdict is Verdict.FAIL for r in abort)
        warned = [r for r in abort if r.verdict is Verdict.WARN]
        assert warned and all("sequential boundary" in r.reason for r in warned)
        assert (
            "abort: error ratio 9.26% > 5% over 2m (108 requests); not significant at 95% "
            "(lower bound 4.35%, sequential boundary 99.38% for 108 requests)"
        ) in [r.reason for r in warned]
        # The same history at a fixed 95% per look aborts: the boundary is what holds it.
        monkeypatch.setattr(verdict, "SEQUENTIAL_REQUESTS", 1)
        assert any(r.verdict is Verdict.FAIL for r in run())
    finally:
        provider.close()


# Uneven traffic: 15s scrapes alternating 20 requests/s (2% 5xx) and 5 (10% 5xx).
TILED = Subject("tiles1", "v2")


def _uneven_traffic(t: float) -> Traffic:
    busy = int(t // 15) % 2 == 0
    return Traffic(rps=20 if busy else 5, errors=0.02 if busy else 0.10)


@pytest.fixture(scope="module")
def uneven_prometheus(
    history_start: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    data = tmp_path_factory.mktemp("prom-tiles") / "data"
    backfill(
        data,
        # scrapes 7s off the slices' round boundaries, as a real scrape's clock is
        openmetrics([series("tiles1", "v2", history_start.timestamp() + 7, 900, _uneven_traffic)]),
    )
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        yield server


def test_slices_add_up_to_what_the_counters_counted(
    uneven_prometheus: PrometheusServer, history_start: datetime
) -> None:
    """Adjacent slices (the evidence since a breach began) are the counters' own
    differences: their sum is the counters' increase over the span, exactly. increase()
    over each 30s slice sees one of its two 15s scrapes' increments and doubles it: here
    the busy ones only (twice the requests, at 2%)."""
    provider = PrometheusProvider(uneven_prometheus.url)
    try:
        start = history_start + timedelta(minutes=3)
        end = history_start + timedelta(minutes=9)
        slices = provider.counts_range(get_profile("http"), [TILED], 30.0, start, end, 30.0)
        found = slices[TILED]
        assert [t for t, _ in found] == [start + timedelta(seconds=30 * i) for i in range(13)]

        def counted(at: datetime, code: str) -> float:
            selector = f'app="tiles1", version="v2", code=~"{code}"'
            return provider.query(f"sum(http_requests_total{{{selector}}})", at)[0][1]

        before = start - timedelta(seconds=30)
        requests = counted(end, ".*") - counted(before, ".*")
        errors = counted(end, "5..") - counted(before, "5..")
        # 13 slices of 30s: one busy and one quiet scrape interval each
        assert requests == pytest.approx(13 * (20 + 5) * 15)
        assert errors == pytest.approx(13 * (20 * 0.02 + 5 * 0.10) * 15)
        assert sum(c.requests for _, c in found) == pytest.approx(requests)
        assert sum(c.errors for _, c in found) == pytest.approx(errors)
    finally:
        provider.close()
