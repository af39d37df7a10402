"""Unit tests of the traffic, CPU, memory, memory-growth and database-pool gates: their specs,
their pure judging rules, and their measurements by the built-in scraper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput, ProviderError
from gatekeeper.domain.verdicts import Verdict
from gates import resource_promql as rq
from gates.evaluate import GateEvaluator, Release
from gates.kinds import kind_of
from gates.kinds.growth import judge_growth
from gates.kinds.pool import judge_pool
from gates.kinds.resources import judge_resource
from gates.kinds.traffic import Rate, judge_traffic, share_band
from gates.live import LiveGates
from gates.profiles import POOL_MAPPINGS, PROFILES, RESOURCES, PoolMapping, Profile
from gates.provider import (
    Counts,
    PodSeries,
    PoolUse,
    Provider,
    ResourceProvider,
    Subject,
    Usage,
)
from gates.spec import GateSet, GateSpec, default_gates, parse_gate_set
from tests.support.fakes import FakeClock, FakeProvider
from tests.unit.test_scraper import POD_A, POD_B, Frame, req, scraped

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HTTP = PROFILES["http"]
PROCESS = RESOURCES["process"]
CADVISOR = RESOURCES["cadvisor"]
CAND = Subject("shop", "v2")
BASE = Subject("shop", "v1")
MiB = 2.0**20


def gate(name: str, **changes: Any) -> GateSpec:
    spec = next(g for g in default_gates().gates if g.name == name)
    return spec.model_copy(update=changes)


TRAFFIC = gate("traffic")
CPU = gate("cpu")
MEMORY = gate("memory")
POOL = gate("db-pool")
GROWTH = GateSpec.model_validate(
    {"name": "memory-growth", "kind": "growth", "metric": "memory", "max_growth": 0.2,
     "window": "10m"}
)  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"metric": "requests"}, "metric requests is judged by kind traffic, not threshold"),
        ({"kind": "traffic", "metric": "error_ratio"}, "a traffic gate judges metric requests"),
        ({"kind": "baseline", "metric": "cpu"}, "needs max_ratio"),
        ({"kind": "baseline", "metric": "cpu", "max_ratio": 1.5, "max_increase": 0.1},
         "compares by max_ratio, not max_increase"),
        ({"kind": "growth", "metric": "memory"}, "a growth gate needs max_growth"),
        ({"kind": "growth", "metric": "cpu", "max_growth": 0.2},
         "metric cpu is judged by kind baseline, not growth"),
        ({"metric": "db_pool"}, "a db_pool gate needs threshold"),
        ({"metric": "db_pool", "threshold": 80}, "above 0 and at most 1"),
        ({"metric": "db_pool", "threshold": 0.8, "pool": "c3p0"}, "allowed: hikaricp,"),
        ({"metric": "error_ratio", "threshold": 0.05, "warmup": "5m"},
         "warmup applies to the cpu and memory gates only"),
        ({"metric": "error_ratio", "threshold": 0.05, "max_ratio": 2}, "max_ratio applies"),
        ({"kind": "baseline", "metric": "memory", "max_ratio": 1}, "greater than 1"),
    ],
)  # fmt: skip
def test_a_resource_gate_spec_that_does_not_add_up_is_refused(
    spec: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidInput, match="gates.0") as e:
        parse_gate_set([{"name": "g", **spec}])
    assert words in str(e.value)


def test_the_resource_source_is_a_choice_of_the_gate_set() -> None:
    assert parse_gate_set({"resources": "cadvisor", "gates": [CPU]}).resources == "cadvisor"
    with pytest.raises(InvalidInput, match="resources 'docker' is not known; allowed: process"):
        parse_gate_set({"resources": "docker", "gates": [CPU]})


def test_time_compression_scales_the_warm_up_and_the_growth_period() -> None:
    scaled = GateSet(gates=(CPU, GROWTH)).scaled(60).gates
    assert (scaled[0].warmup, scaled[0].window) == (5.0, 5.0)
    assert (scaled[1].growth_period, scaled[1].max_growth) == (60.0, 0.2)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [(TRAFFIC, "traffic"), (CPU, "resources"), (MEMORY, "resources"), (GROWTH, "growth"),
     (POOL, "pool")],
)  # fmt: skip
def test_each_resource_gate_has_its_own_module(spec: GateSpec, kind: str) -> None:
    assert kind_of(spec) == kind


# -- traffic --------------------------------------------------------------------------------


def test_the_share_band_is_a_tolerance_on_the_odds_of_the_weight() -> None:
    low, high = share_band(25, 0.1)
    assert (round(low, 4), round(high, 4)) == (0.2308, 0.2703)
    low, high = share_band(50, 0.1)
    assert (round(low, 4), round(high, 4)) == (0.4737, 0.5263)


@pytest.mark.parametrize(
    ("weight", "cand", "stable", "before", "after", "verdict", "words"),
    [
        (25, 1500, 4500, None, None, Verdict.PASS, "candidate took 25% of 6,000 requests"),
        # a fifth of the candidate's requests unseen: 1,200 of 5,700 counted
        (25, 1200, 4500, None, None, Verdict.FAIL, "below its weight (upper bound 22.34% at 99%"),
        # fewer requests: the same shortfall is not yet significant
        (25, 120, 450, None, None, Verdict.PASS, "candidate took 21.05% of 570 requests"),
        (25, 3000, 3000, None, None, Verdict.FAIL, "above its weight (lower bound"),
        (50, 0, 4500, None, None, Verdict.FAIL, "candidate took 0% of 4,500 requests"),
        (100, 4000, 1500, None, None, Verdict.FAIL, "stable took 27.27% of 5,500 requests"),
        (100, 5400, 100, None, None, Verdict.PASS, "stable took 1.82% of 5,500 requests"),
        (0, 0, 6000, None, None, Verdict.PASS, "candidate took 0% of 6,000 requests"),
        (100, 4200, 0, Rate(6000, 300), Rate(4200, 300), Verdict.FAIL,
         "total 14.0 requests/s after the shift vs 20.0 before (-30%; at most"),
        (100, 5700, 0, Rate(6000, 300), Rate(5700, 300), Verdict.PASS,
         "(-5%; a drop of 10% allowed)"),
        (25, 30, 60, None, None, Verdict.INCONCLUSIVE, "too little traffic: 90 requests"),
    ],
)  # fmt: skip
def test_traffic_judges_the_share_against_the_weight_and_the_total_against_before(
    weight: int,
    cand: float,
    stable: float,
    before: Rate | None,
    after: Rate | None,
    verdict: Verdict,
    words: str,
) -> None:
    r = judge_traffic(TRAFFIC, weight, cand, stable, 300, T0, before=before, after=after)
    assert r.verdict is verdict, r.reason
    assert r.reason.startswith("traffic: "), r.reason
    assert words in r.reason, r.reason


def test_traffic_at_confidence_zero_judges_the_share_as_counted() -> None:
    g = TRAFFIC.model_copy(update={"confidence": 0.0})
    assert judge_traffic(g, 25, 220, 780, 300, T0).verdict is Verdict.FAIL  # 22% < 23.08%
    assert judge_traffic(g, 25, 240, 760, 300, T0).verdict is Verdict.PASS


@dataclass
class Recorder(FakeProvider):
    """Counts from a table: (subject, window end) -> requests; every call noted."""

    table: dict[tuple[Subject, datetime], float] = field(default_factory=dict)
    asked: list[tuple[float, datetime]] = field(default_factory=list)

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        self.asked.append((window_s, at))
        return {s: Counts(self.table[(s, at)], 0.0) for s in subjects if (s, at) in self.table}


def _traffic_evaluator(provider: Provider) -> GateEvaluator:
    return GateEvaluator(GateSet(gates=(TRAFFIC,)), provider, check_windows=False)


def test_traffic_is_judged_from_the_shift_on_and_the_drop_against_the_window_before_it() -> None:
    shift = at(1200)
    now = at(2400)  # more than a window (15m) after the shift: the drop is judged on the first
    first_end = shift + timedelta(seconds=900)
    table = {
        (CAND, now): 1500.0, (BASE, now): 4500.0,
        (BASE, shift): 6000.0,
        (CAND, first_end): 1500.0, (BASE, first_end): 4500.0,
    }  # fmt: skip
    provider = Recorder(traffic=lambda s, a, b: None, table=table)
    release = Release(CAND, T0, BASE, weights=((at(30), 0), (shift, 25)))
    [r] = _traffic_evaluator(provider).evaluate(release, now)
    assert r.verdict is Verdict.PASS, r.reason
    assert provider.asked == [(900, now), (900, shift), (900, first_end)]


def test_the_rate_before_a_shift_is_counted_from_the_start_of_the_release_on() -> None:
    shift = at(300)
    table = {(CAND, at(600)): 1500.0, (BASE, at(600)): 4500.0, (BASE, shift): 6000.0}
    provider = Recorder(traffic=lambda s, a, b: None, table=table)
    release = Release(CAND, T0, BASE, weights=((shift, 25),))
    [r] = _traffic_evaluator(provider).evaluate(release, at(600))
    assert provider.asked == [(300, at(600)), (300, shift)]
    assert "total 20.0 requests/s after the shift vs 20.0 before" in r.reason, r.reason


@pytest.mark.parametrize(
    ("release", "words"),
    [
        (Release(CAND, T0, BASE), "not applicable: no weight told to the router yet"),
        (Release(CAND, T0, None, weights=((T0, 25),)), "not applicable: no baseline version"),
        (Release(CAND, T0, BASE, weights=((at(598), 25),)), "too little data: shifted to 25% 2s"),
    ],
)
def test_traffic_without_a_weight_a_baseline_or_data_since_the_shift(
    release: Release, words: str
) -> None:
    provider = FakeProvider(lambda s, a, b: Counts(1000, 0))
    ev = _traffic_evaluator(provider)
    ev.scrape_s  # noqa: B018 - read now (None: the fake does not know), as evaluate does
    ev.__dict__["scrape_s"] = 15.0
    [r] = ev.evaluate(release, at(600))
    assert words in r.reason, r.reason


def test_live_gates_learn_each_weight_the_router_was_told_once() -> None:
    clock = FakeClock(T0)
    provider = FakeProvider(lambda s, a, b: None)
    live = LiveGates(_traffic_evaluator(provider), Release(CAND, T0, BASE), clock=clock)
    live.weight_told(25, at(10))
    live.weight_told(25, at(20))  # the same weight again (a resumed step): no change
    live.weight_told(50, at(30))
    assert live.release.weights == ((at(10), 25), (at(30), 50))
    assert live.release.weight_at(at(25)) == (at(10), 25)
    assert live.release.first_traffic(at(40)) == at(10)


# -- cpu and memory against the baseline ----------------------------------------------------


def series(values: Sequence[float], step: float = 30.0) -> list[tuple[datetime, float]]:
    return [(at(i * step), v) for i, v in enumerate(values)]


def pods(n: int, usage: Sequence[float], prefix: str = "p") -> PodSeries:
    return {f"{prefix}{i}": series(usage) for i in range(n)}


STEADY_REQ = [300.0] * 10  # 10 requests/s in each 30s sample


@pytest.mark.parametrize(
    ("spec", "cand", "base", "cand_req", "base_req", "verdict", "words"),
    [
        (CPU, pods(1, [0.33] * 10), pods(1, [0.3] * 10), pods(1, STEADY_REQ),
         pods(1, STEADY_REQ), Verdict.PASS, "1.1ms is 1.10x baseline 1ms (<= 1.5x allowed)"),
        (CPU, pods(1, [0.9] * 10), pods(1, [0.3] * 10), pods(1, STEADY_REQ),
         pods(1, STEADY_REQ), Verdict.FAIL, "3ms is 3.00x baseline 1ms (> 1.5x allowed; at least"),
        # 1.6x on average, but noisy samples: not significant, so hold
        (CPU, pods(1, [0.2, 1.0, 0.2, 1.0, 0.2, 1.0, 0.2, 0.9, 0.3, 0.8]), pods(1, [0.35] * 10),
         pods(1, STEADY_REQ), pods(1, STEADY_REQ), Verdict.WARN, "not significant: at least"),
        (CPU, {}, {}, {}, {}, Verdict.NOT_APPLICABLE, "neither version exports"),
        (CPU, {}, pods(1, [0.3] * 10), {}, pods(1, STEADY_REQ), Verdict.INCONCLUSIVE,
         "the candidate exports no CPU per request, the baseline does"),
        (CPU, pods(1, [0.03] * 10), pods(1, [0.3] * 10), pods(1, [5.0] * 10),
         pods(1, STEADY_REQ), Verdict.INCONCLUSIVE, "too little traffic: 50 requests"),
        (CPU, pods(1, [0.3] * 10), pods(1, [0.03] * 10), pods(1, STEADY_REQ),
         pods(1, [5.0] * 10), Verdict.NOT_APPLICABLE, "baseline has too little traffic"),
        # a candidate pod at a tenth of a baseline pod's load: not comparable per request
        (CPU, pods(1, [0.06] * 10), pods(1, [0.3] * 10), pods(1, [30.0] * 10),
         pods(1, STEADY_REQ), Verdict.NOT_APPLICABLE, "under 1/2 of the load"),
        (CPU, pods(6, [0.9] * 10), pods(6, [0.3] * 10), pods(6, STEADY_REQ),
         pods(6, STEADY_REQ), Verdict.FAIL, "(medians of 6 and 6 pods); Mann-Whitney"),
        (MEMORY, pods(1, [30 * MiB] * 10), pods(1, [25 * MiB] * 10), pods(1, STEADY_REQ),
         pods(1, STEADY_REQ), Verdict.PASS, "30.0 MiB is 1.20x baseline 25.0 MiB"),
        (MEMORY, pods(2, [80 * MiB] * 10), pods(3, [25 * MiB] * 10), pods(2, STEADY_REQ),
         pods(3, STEADY_REQ), Verdict.FAIL, "80.0 MiB is 3.20x baseline 25.0 MiB (> 1.5x"),
        # memory is compared however little stable serves (at 100% it serves nothing)
        (MEMORY, pods(1, [26 * MiB] * 10), pods(1, [25 * MiB] * 10), pods(1, STEADY_REQ),
         {}, Verdict.PASS, "1.04x baseline"),
    ],
)  # fmt: skip
def test_cpu_and_memory_against_the_baseline(
    spec: GateSpec,
    cand: PodSeries,
    base: PodSeries,
    cand_req: PodSeries,
    base_req: PodSeries,
    verdict: Verdict,
    words: str,
) -> None:
    r = judge_resource(spec, cand, base, cand_req, base_req, 300, T0)
    assert r.verdict is verdict, r.reason
    assert r.reason.startswith(f"{spec.name}: "), r.reason
    assert words in r.reason, r.reason


def test_too_few_baseline_samples_make_the_comparison_not_applicable() -> None:
    r = judge_resource(
        CPU, pods(1, [0.3] * 10), pods(1, [0.3] * 2), pods(1, STEADY_REQ), pods(1, [300.0] * 2),
        300, T0,
    )  # fmt: skip
    assert r.verdict is Verdict.NOT_APPLICABLE, r.reason
    assert "too few baseline samples (2 over 5m; 3 needed)" in r.reason


# -- memory growth --------------------------------------------------------------------------


def _memory(fn: Any, points: int = 21, step: float = 30.0) -> list[tuple[datetime, float]]:
    return [(at(i * step), fn(i * step)) for i in range(points)]


def test_memory_growing_steadily_over_the_window_and_in_each_half_fails() -> None:
    leak = _memory(lambda t: (60 + 60 * t / 3600) * MiB)  # +60 MiB an hour
    r = judge_growth(GROWTH, {"a": leak}, 600, at(600), 30)
    assert r.verdict is Verdict.FAIL, r.reason
    assert r.reason.startswith("memory-growth: resident memory grows +"), r.reason
    assert "per 1h" in r.reason and "> 20% per 1h allowed, and in each half" in r.reason


def test_one_step_of_memory_warns_but_is_not_a_leak() -> None:
    step = _memory(lambda t: (60 + (10 if t >= 450 else 0)) * MiB)
    r = judge_growth(GROWTH, {"a": step}, 600, at(600), 30)
    assert r.verdict is Verdict.WARN, r.reason
    assert "not in each half" in r.reason


def test_flat_memory_passes_and_the_median_pod_decides() -> None:
    flat = _memory(lambda t: 60 * MiB)
    leak = _memory(lambda t: (60 + 60 * t / 3600) * MiB)
    r = judge_growth(GROWTH, {"a": flat, "b": flat, "c": leak}, 600, at(600), 30)
    assert r.verdict is Verdict.PASS, r.reason
    assert "(3 pods)" in r.reason or "3 pods" in r.reason


def test_a_pod_younger_than_the_window_is_left_out() -> None:
    young = [(t, v) for t, v in _memory(lambda t: (60 + t / 10) * MiB) if t >= at(300)]
    r = judge_growth(GROWTH, {"young": young}, 600, at(600), 30)
    assert r.verdict is Verdict.INCONCLUSIVE, r.reason
    assert "too little data: no pod has memory samples across the window" in r.reason


# -- database pools -------------------------------------------------------------------------


def use(in_use: float, maximum: float, pod: str = "10.0.0.5:8080", pool: str = "p1") -> PoolUse:
    return PoolUse("hikaricp", pod, pool, in_use, maximum)


@pytest.mark.parametrize(
    ("uses", "requests", "verdict", "words"),
    [
        ([use(9.2, 10)], 600, Verdict.FAIL,
         "pool 'p1' of 10.0.0.5:8080 (hikaricp) 92% in use (9.2 of 10 connections, mean) > 80%"),
        ([use(2, 10), use(8.5, 10, pool="p2")], 600, Verdict.FAIL, "1 of 2 pools above"),
        ([use(8, 10)], 600, Verdict.PASS, "80% in use (8.0 of 10 connections, mean) <= 80%"),
        ([use(9.9, 10)], 20, Verdict.INCONCLUSIVE, "too little traffic: 20 requests"),
        ([use(3, math.nan)], 600, Verdict.INCONCLUSIVE, "no pool with both connections in use"),
    ],
)  # fmt: skip
def test_the_fullest_pool_against_the_threshold(
    uses: list[PoolUse], requests: float, verdict: Verdict, words: str
) -> None:
    r = judge_pool(POOL, uses, requests, 120, T0)
    assert r.verdict is verdict, r.reason
    assert r.reason.startswith("db-pool: "), r.reason
    assert words in r.reason, r.reason


# -- a provider that does not measure pods ---------------------------------------------------


def test_with_a_provider_that_measures_no_pods_the_resource_gates_are_not_applicable() -> None:
    provider = FakeProvider(lambda s, a, b: Counts(1000, 0))
    assert not isinstance(provider, ResourceProvider)
    ev = GateEvaluator(GateSet(gates=(CPU, MEMORY, POOL, GROWTH)), provider, check_windows=False)
    results = ev.evaluate(Release(CAND, T0, BASE, weights=((T0, 25),)), at(1800))
    assert [r.verdict for r in results] == [Verdict.NOT_APPLICABLE] * 4
    assert all("the metrics source fake does not measure pods" in r.reason for r in results)


def test_under_a_proxys_profile_the_pod_gates_are_not_applicable_and_traffic_still_judges() -> None:
    provider = FakeProvider(lambda s, a, b: Counts(1000 if s == CAND else 3000, 0))
    gates = GateSet(profile="nginx", gates=(TRAFFIC, CPU, MEMORY, POOL, GROWTH))
    ev = GateEvaluator(gates, provider, check_windows=False)
    results = ev.evaluate(Release(CAND, T0, BASE, weights=((T0, 25),)), at(1800))
    assert [r.verdict for r in results] == [Verdict.PASS] + [Verdict.NOT_APPLICABLE] * 4
    assert "profile nginx's request counter is a proxy's" in results[1].reason


# -- the built-in scraper's measurements ----------------------------------------------------


def proc(cpu: float, rss: float) -> list[tuple[str, dict[str, str], float]]:
    return [("process_cpu_seconds_total", {}, cpu), ("process_resident_memory_bytes", {}, rss)]


def otel_pool(used: float, size: float) -> list[tuple[str, dict[str, str], float]]:
    return [
        ("db_client_connections_usage", {"pool_name": "main", "state": "used"}, used),
        ("db_client_connections_usage", {"pool_name": "main", "state": "idle"}, size - used),
        ("db_client_connections_max", {"pool_name": "main"}, size),
    ]


def _two_versions(seconds: int = 10) -> list[Frame]:
    """Pod A serves v1 (10 requests/s, 10 ms CPU each), pod B v2 (5/s, 30 ms each)."""
    return [
        {
            POD_A: [req("shop", "v1", "200", 10.0 * t), *proc(0.1 * t, 40 * MiB)],
            POD_B: [
                req("shop", "v2", "200", 5.0 * t),
                *proc(0.15 * t, (40 + t) * MiB),
                *otel_pool(6.0 + (t % 2), 10.0),
            ],
        }
        for t in range(seconds + 1)
    ]


def test_the_scraper_gives_each_version_the_process_metrics_of_the_targets_it_is_served_by() -> (
    None
):
    provider = scraped(_two_versions(), targets=(POD_A, POD_B))
    cpu = provider.usage_range(HTTP, PROCESS, Usage.CPU_SECONDS, [CAND, BASE], 2, at(6), at(10), 2)
    requests = provider.requests_range(HTTP, PROCESS, [CAND, BASE], 2, at(6), at(10), 2)
    memory = provider.usage_range(HTTP, PROCESS, Usage.MEMORY_BYTES, [CAND], 2, at(10), at(10), 1)
    rounded = {
        v: {pod: [(t, round(x, 9)) for t, x in pts] for pod, pts in by_pod.items()}
        for v, by_pod in cpu.items()
    }
    assert rounded == {
        CAND: {"pod-b:9100": [(at(6), 0.3), (at(8), 0.3), (at(10), 0.3)]},
        BASE: {"pod-a:9100": [(at(6), 0.2), (at(8), 0.2), (at(10), 0.2)]},
    }
    assert requests[CAND] == {"pod-b:9100": [(at(6), 10.0), (at(8), 10.0), (at(10), 10.0)]}
    assert memory == {CAND: {"pod-b:9100": [(at(10), 49.5 * MiB)]}}  # mean of 49 and 50 MiB
    cpu_gate = CPU.model_copy(update={"min_requests": 20})
    r = judge_resource(cpu_gate, cpu[CAND], cpu[BASE], requests[CAND], requests[BASE], 6, at(10))
    assert r.verdict is Verdict.FAIL, r.reason
    assert "candidate CPU per request 30ms is 3.00x baseline 10ms" in r.reason


def test_the_scraper_reads_every_known_pool_exporter() -> None:
    provider = scraped(_two_versions(), targets=(POD_A, POD_B))
    got = provider.pools(HTTP, PROCESS, list(POOL_MAPPINGS.values()), [CAND, BASE], 4, at(10))
    assert got == {CAND: [PoolUse("otel", "pod-b:9100", "main", 6.5, 10.0)]}


def test_the_scraper_leaves_cadvisor_to_prometheus() -> None:
    provider = scraped(_two_versions(2), targets=(POD_A, POD_B))
    with pytest.raises(ProviderError, match="cAdvisor's container metrics need Prometheus"):
        provider.usage_range(HTTP, CADVISOR, Usage.CPU_SECONDS, [CAND], 2, at(2), at(2), 1)


def test_a_candidate_series_born_after_its_first_scrapes_counts_its_first_requests() -> None:
    """Lazy series: a counter created at the first request; the scrape before it answered."""
    frames: list[Frame] = [{POD_B: proc(0, 1)} for _ in range(3)]
    frames += [{POD_B: [req("shop", "v2", "200", v), *proc(0, 1)]} for v in (40, 80, 120)]
    provider = scraped(frames, targets=(POD_B,))
    assert provider.counts(HTTP, [CAND], 3, at(5)) == {CAND: Counts(120, 0)}


# -- PromQL ---------------------------------------------------------------------------------


def test_process_metrics_are_joined_to_a_version_through_its_request_counter() -> None:
    q = rq.usage(HTTP, PROCESS, Usage.CPU_SECONDS, [CAND, BASE], 30)
    assert q == (
        "sum by (app, version, instance) ((increase(process_cpu_seconds_total{}[30s])) "
        "* on (job, instance) group_left (app, version) group by (job, instance, app, version) "
        '(http_requests_total{app="shop",version=~"v1|v2"}))'
    )


def test_cadvisor_joins_on_the_pod_in_the_versions_namespace() -> None:
    q = rq.usage(
        PROFILES["istio"], CADVISOR, Usage.MEMORY_BYTES, [Subject("shop", "v2", "prod")], 60
    )
    assert q == (
        "sum by (destination_workload_namespace, destination_workload, pod) "
        '((avg_over_time(container_memory_working_set_bytes{namespace=~"prod",container!="",'
        'container!="POD"}[1m])) * on (namespace, pod) group_left '
        "(destination_workload_namespace, destination_workload) group by (namespace, pod, "
        "destination_workload_namespace, destination_workload) (istio_requests_total{"
        'destination_workload_namespace="prod",destination_workload="shop-v2",'
        'reporter="destination"}))'
    )


def test_a_proxys_request_counter_cannot_find_the_pods() -> None:
    with pytest.raises(ProviderError, match="profile nginx: its request counter"):
        rq.usage(PROFILES["nginx"], CADVISOR, Usage.CPU_SECONDS, [CAND], 60)


@pytest.mark.parametrize("mapping", list(POOL_MAPPINGS.values()), ids=lambda m: m.name)
def test_each_pool_mapping_pairs_its_in_use_and_max_metrics(mapping: PoolMapping) -> None:
    in_use = rq.pool_in_use(HTTP, PROCESS, mapping, [CAND], 120)
    maximum = rq.pool_max(HTTP, PROCESS, mapping, [CAND], 120)
    assert f"avg_over_time({mapping.in_use_metric}{{" in in_use
    assert in_use.startswith(f"sum by (app, version, instance, {mapping.in_use_key})")
    assert maximum.startswith(f"max by (app, version, instance, {mapping.max_key})")
    for label, value in mapping.in_use_matchers:
        assert f'{label}="{value}"' in in_use
