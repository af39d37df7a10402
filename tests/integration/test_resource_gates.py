"""The traffic, CPU, memory, memory-growth and database-pool gates against a real Prometheus
with backfilled histories: for each, a fail, a pass, not applicable and too little data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.verdicts import Decision, GateResult, Verdict
from gates.backtest import backtest
from gates.evaluate import GateEvaluator, Release
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import GateSet, default_gates, parse_gate_set
from tests.support.prom import LocalPrometheus, backfill, prometheus

pytestmark = pytest.mark.integration

STEP = 15.0  # seconds between backfilled samples (the Prometheus scrape interval too)
MINUTES = 40
SHIFT = 10 * 60  # the candidate gets traffic from 10 minutes in
MiB = 2.0**20

Fn = Callable[[float], float]  # seconds since the start of the history -> a figure


def const(value: float) -> Fn:
    return lambda t: value


def after_shift(before: float, after: float) -> Fn:
    return lambda t: before if t < SHIFT else after


@dataclass
class Pod:
    """One pod of one version: requests/s, CPU seconds per request, idle CPU seconds per
    second, resident memory, and (optionally) a database pool's use and size."""

    app: str
    version: str
    name: str
    rps: Fn
    cpu_per_request: float = 0.001
    idle_cpu: float = 0.002
    rss: Fn = field(default_factory=lambda: const(60 * MiB))
    process_metrics: bool = True
    pool: tuple[str, Fn, float] | None = None  # (exporter mapping, connections in use, max)
    cadvisor: bool = False  # container_* series by namespace and pod instead of process_*


class History:
    """OpenMetrics text for promtool: every family in one block, samples in time order."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.families: dict[str, tuple[str, list[str]]] = {}

    def add(self, family: str, kind: str, line: str) -> None:
        self.families.setdefault(family, (kind, []))[1].append(line)

    def pod(self, p: Pod) -> None:
        target = f'job="svc",instance="{p.name}:8080"'
        who = f'app="{p.app}",version="{p.version}"'
        if p.cadvisor:
            target = f'job="svc",instance="{p.name}:8080",namespace="prod",pod="{p.name}"'
        requests = cpu = 0.0
        for i in range(int(MINUTES * 60 / STEP) + 1):
            t = i * STEP
            ts = self.start + t
            if i:
                served = p.rps(t) * STEP
                requests += served
                cpu += served * p.cpu_per_request + p.idle_cpu * STEP
            if p.rps(t) > 0 or requests > 0:
                self.add(
                    "http_requests",
                    "counter",
                    f'http_requests_total{{{target},{who},code="200"}} {requests:.3f} {ts:.3f}',
                )
            if p.cadvisor:
                box = f'namespace="prod",pod="{p.name}",container="app"'
                self.add(
                    "container_cpu_usage_seconds",
                    "counter",
                    f"container_cpu_usage_seconds_total{{{box}}} {cpu:.4f} {ts:.3f}",
                )
                self.add(
                    "container_memory_working_set_bytes",
                    "gauge",
                    f"container_memory_working_set_bytes{{{box}}} {p.rss(t):.0f} {ts:.3f}",
                )
            elif p.process_metrics:
                self.add(
                    "process_cpu_seconds",
                    "counter",
                    f"process_cpu_seconds_total{{{target}}} {cpu:.4f} {ts:.3f}",
                )
                self.add(
                    "process_resident_memory_bytes",
                    "gauge",
                    f"process_resident_memory_bytes{{{target}}} {p.rss(t):.0f} {ts:.3f}",
                )
            if p.pool is not None:
                self._pool(p, target, t, ts)

    def _pool(self, p: Pod, target: str, t: float, ts: float) -> None:
        assert p.pool is not None
        mapping, in_use, size = p.pool
        if mapping == "hikaricp":
            self.add(
                "hikaricp_connections_active",
                "gauge",
                f'hikaricp_connections_active{{{target},pool="HikariPool-1"}} {in_use(t)} {ts:.3f}',
            )
            self.add(
                "hikaricp_connections_max",
                "gauge",
                f'hikaricp_connections_max{{{target},pool="HikariPool-1"}} {size} {ts:.3f}',
            )
        elif mapping == "otel":
            for state, value in (("used", in_use(t)), ("idle", size - in_use(t))):
                self.add(
                    "db_client_connections_usage",
                    "gauge",
                    f'db_client_connections_usage{{{target},pool_name="main",state="{state}"}} '
                    f"{value} {ts:.3f}",
                )
            self.add(
                "db_client_connections_max",
                "gauge",
                f'db_client_connections_max{{{target},pool_name="main"}} {size} {ts:.3f}',
            )
        elif mapping == "pgbouncer":
            self.add(
                "pgbouncer_pools_server_active_connections",
                "gauge",
                f'pgbouncer_pools_server_active_connections{{{target},database="orders",'
                f'user="app"}} {in_use(t)} {ts:.3f}',
            )
            self.add(
                "pgbouncer_databases_pool_size",
                "gauge",
                f'pgbouncer_databases_pool_size{{{target},name="orders",database="orders_db"}} '
                f"{size} {ts:.3f}",
            )

    def text(self) -> str:
        out = []
        for family, (kind, lines) in self.families.items():
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)
        return "\n".join(out) + "\n# EOF\n"


def leak(mib_per_hour: float, start_mib: float = 60) -> Fn:
    return lambda t: (start_mib + mib_per_hour * max(0.0, t - SHIFT) / 3600) * MiB


def step_up(at_s: float, by_mib: float) -> Fn:
    return lambda t: (60 + (by_mib if t >= at_s else 0.0)) * MiB


def canary(app: str, *, stable_rps: Fn | None = None, **candidate: Any) -> list[Pod]:
    """Stable v1 at 20 requests/s until the shift, 15 after it; the candidate v2 at 5."""
    cand_rps = candidate.pop("rps", after_shift(0.0, 5.0))
    return [
        Pod(app, "v1", f"{app}-v1-a", stable_rps or after_shift(20.0, 15.0)),
        Pod(app, "v2", f"{app}-v2-a", cand_rps, **candidate),
    ]


def many_pods(app: str, n: int, cand_cpu: float) -> list[Pod]:
    """n pods a version, each at 4 requests/s after the shift (stable 4 before it too)."""
    pods = [Pod(app, "v1", f"{app}-v1-{i}", const(4.0), cpu_per_request=0.001) for i in range(n)]
    pods += [
        Pod(app, "v2", f"{app}-v2-{i}", after_shift(0.0, 4.0), cpu_per_request=cand_cpu)
        for i in range(n)
    ]
    return pods


def _scenarios() -> list[Pod]:
    pods: list[Pod] = []
    # traffic
    pods += canary("fair")
    pods += canary("dropper", rps=after_shift(0.0, 4.0))  # a fifth of its share unseen
    pods += canary("stuck", rps=const(0.0))  # the router never applied the weight
    pods += canary("vanish", stable_rps=after_shift(20.0, 0.0), rps=after_shift(0.0, 14.0))
    pods += canary("quiet", stable_rps=const(0.05), rps=after_shift(0.0, 0.05))
    # cpu and memory against the baseline
    # CPU per request is compared at comparable loads: half the traffic each
    half = {"stable_rps": after_shift(20.0, 10.0), "rps": after_shift(0.0, 10.0)}
    pods += canary("cpuok", cpu_per_request=0.0011, **half)
    pods += canary("cpuhog", cpu_per_request=0.003, **half)
    pods += canary("cputhird", cpu_per_request=0.003)  # a third of stable's load per pod
    pods += [Pod(p.app, p.version, p.name, p.rps, process_metrics=False) for p in canary("noproc")]
    pods += canary("lostproc", process_metrics=False)  # only the candidate exports none
    pods += many_pods("cpupods", 6, cand_cpu=0.0025)
    pods += many_pods("cpupodsok", 6, cand_cpu=0.00105)
    pods += canary("fat", rss=const(120 * MiB))
    # memory growth
    pods += canary("leaky", rss=leak(60))  # +100%/h of its 60 MiB
    pods += canary("stepped", rss=step_up(SHIFT + 20 * 60, 12))  # one step, no leak
    # database pools
    pods += canary("poolfull", pool=("hikaricp", const(9.2), 10))
    pods += canary("poolok", pool=("otel", const(2.0), 10))
    pods += canary("poolquiet", stable_rps=const(0.05), rps=after_shift(0.0, 0.05),
                   pool=("hikaricp", const(9.5), 10))  # fmt: skip
    # Kubernetes: cAdvisor per container, pgbouncer beside the app in its pod; the pods are
    # told apart by the version label their request series carry, not by their names.
    names = {"v1": "kube-5d8f7c9b4-xk2p1", "v2": "kube-candidate-6c7d8e9f0-ab3cd"}
    kube = canary("kube", cpu_per_request=0.003, pool=("pgbouncer", const(19.0), 20), **half)
    for p in kube:
        pods.append(
            Pod(
                p.app,
                p.version,
                names[p.version],
                p.rps,
                cpu_per_request=p.cpu_per_request,
                pool=p.pool,
                cadvisor=True,
            )
        )
    return pods


@pytest.fixture(scope="module")
def start() -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now.replace(minute=0) - timedelta(hours=3)


@pytest.fixture(scope="module")
def server(start: datetime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    history = History(start.timestamp())
    for pod in _scenarios():
        history.pod(pod)
    data: Path = tmp_path_factory.mktemp("prom-resources") / "data"
    backfill(data, history.text())
    with prometheus(data_dir=data, scrape_interval="15s") as prom:
        yield prom


def judge(
    server: LocalPrometheus,
    start: datetime,
    app: str,
    gate: dict[str, Any],
    *,
    minutes: float = 25,
    weight: int | None = 25,
    resources: str = "process",
    namespace: str = "default",
) -> GateResult:
    gate_set = parse_gate_set({"resources": resources, "gates": [gate]})
    provider = PrometheusProvider(server.url)
    try:
        evaluator = GateEvaluator(gate_set, provider, check_windows=False)
        weights = () if weight is None else ((start + timedelta(seconds=SHIFT), weight),)
        release = Release(
            candidate=Subject(app, "v2", namespace),
            baseline=Subject(app, "v1", namespace),
            started=start,
            weights=weights,
        )
        [result] = evaluator.evaluate(release, start + timedelta(minutes=minutes))
    finally:
        provider.close()
    assert "measurement error" not in result.reason, result.reason
    return result


def built_in(name: str, **changes: Any) -> dict[str, Any]:
    spec = next(g for g in default_gates().gates if g.name == name)
    return {**spec.model_dump(mode="json", exclude_none=True), **changes}


TRAFFIC = built_in("traffic")
CPU = built_in("cpu")
MEMORY = built_in("memory")
POOL = built_in("db-pool")
GROWTH = {
    "name": "memory-growth",
    "kind": "growth",
    "metric": "memory",
    "max_growth": 0.2,
    "window": "10m",
    "warmup": "2m",
    "interval": "1m",
}


@pytest.mark.parametrize(
    ("app", "gate", "kw", "verdict", "words"),
    [
        # traffic
        ("fair", TRAFFIC, {}, Verdict.PASS, "candidate took 25% of "),
        ("dropper", TRAFFIC, {}, Verdict.FAIL, "at weight 25%: below its weight"),
        ("stuck", TRAFFIC, {"weight": 50}, Verdict.FAIL, "candidate took 0% of "),
        ("vanish", TRAFFIC, {"weight": 100}, Verdict.FAIL, "requests/s after the shift vs"),
        ("fair", TRAFFIC, {"weight": None}, Verdict.NOT_APPLICABLE, "no weight told"),
        ("quiet", TRAFFIC, {}, Verdict.INCONCLUSIVE, "too little traffic"),
        ("fair", TRAFFIC, {"minutes": 10.5}, Verdict.INCONCLUSIVE, "too little data: shifted"),
        # cpu
        ("cpuok", CPU, {}, Verdict.PASS, "x baseline"),
        ("cputhird", CPU, {}, Verdict.NOT_APPLICABLE, "under 1/2 of the load"),
        ("cpuhog", CPU, {}, Verdict.FAIL, "2.67x baseline 1.2ms (> 1.5x allowed; at least"),
        ("cpupods", CPU, {}, Verdict.FAIL, "Mann-Whitney"),
        ("cpupodsok", CPU, {}, Verdict.PASS, "Mann-Whitney"),
        ("noproc", CPU, {}, Verdict.NOT_APPLICABLE, "neither version exports"),
        ("lostproc", CPU, {}, Verdict.INCONCLUSIVE, "the candidate exports no process_cpu"),
        ("quiet", CPU, {}, Verdict.INCONCLUSIVE, "too little traffic"),
        ("cpuhog", CPU, {"minutes": 13}, Verdict.INCONCLUSIVE, "warming up"),
        # memory against the baseline
        ("fair", MEMORY, {}, Verdict.PASS, "1.00x baseline"),
        ("fat", MEMORY, {}, Verdict.FAIL, "2.00x baseline 60.0 MiB (> 1.5x allowed;"),
        ("noproc", MEMORY, {}, Verdict.NOT_APPLICABLE, "neither version exports"),
        ("quiet", MEMORY, {}, Verdict.INCONCLUSIVE, "too little traffic"),
        # memory growth
        ("leaky", GROWTH, {"minutes": 30}, Verdict.FAIL, "and in each half"),
        ("fair", GROWTH, {"minutes": 30}, Verdict.PASS, "resident memory grows +0% per 1h"),
        ("stepped", GROWTH, {"minutes": 34}, Verdict.WARN, "not in each half"),
        ("noproc", GROWTH, {"minutes": 30}, Verdict.NOT_APPLICABLE, "exports no"),
        ("leaky", GROWTH, {"minutes": 18}, Verdict.INCONCLUSIVE, "too little data"),
        # database pools
        ("poolfull", POOL, {}, Verdict.FAIL, "pool 'HikariPool-1' of poolfull-v2-a:8080"),
        ("poolok", POOL, {}, Verdict.PASS, "(otel) 20% in use"),
        ("fair", POOL, {}, Verdict.NOT_APPLICABLE, "exports no database pool metrics"),
        ("poolquiet", POOL, {}, Verdict.INCONCLUSIVE, "too little traffic"),
    ],
)
def test_each_gate_on_a_backfilled_history(
    server: LocalPrometheus,
    start: datetime,
    app: str,
    gate: dict[str, Any],
    kw: dict[str, Any],
    verdict: Verdict,
    words: str,
) -> None:
    result = judge(server, start, app, gate, **kw)
    assert result.verdict is verdict, result.reason
    assert result.reason.startswith(f"{gate['name']}: "), result.reason
    assert words in result.reason, result.reason


@pytest.mark.parametrize(
    ("gate", "verdict", "words"),
    [
        (CPU, Verdict.FAIL, "is 2.67x baseline"),
        (MEMORY, Verdict.PASS, "1.00x baseline"),
        (POOL, Verdict.FAIL, "pool 'orders' of kube-candidate-6c7d8e9f0-ab3cd (pgbouncer) 95%"),
    ],
)
def test_on_kubernetes_cadvisor_and_a_pgbouncer_sidecar_are_read_by_pod(
    server: LocalPrometheus, start: datetime, gate: dict[str, Any], verdict: Verdict, words: str
) -> None:
    result = judge(server, start, "kube", gate, resources="cadvisor", namespace="prod")
    assert result.verdict is verdict, result.reason
    assert words in result.reason, result.reason


def test_the_backtest_shows_the_new_gates_in_its_timeline(
    server: LocalPrometheus, start: datetime
) -> None:
    gate_set = GateSet(gates=default_gates().gates)
    provider = PrometheusProvider(server.url)
    try:
        evaluator = GateEvaluator(gate_set, provider, check_windows=False)
        release = Release(
            candidate=Subject("cpuhog", "v2"),
            baseline=Subject("cpuhog", "v1"),
            started=start,
            weights=((start + timedelta(seconds=SHIFT), 50),),
        )
        result = backtest(evaluator, release, start + timedelta(minutes=25), timedelta(minutes=1))
    finally:
        provider.close()
    timeline = result.to_json()["timeline"]
    by_gate: dict[str, list[str]] = {}
    for row in timeline:
        by_gate.setdefault(row["gate"], []).append(row["verdict"])
    assert {"traffic", "cpu", "memory", "db-pool"} <= set(by_gate), by_gate.keys()
    assert "pass" in by_gate["traffic"] and "not_applicable" in by_gate["traffic"]
    assert by_gate["cpu"][-1] == "fail"
    assert by_gate["db-pool"][-1] == "not_applicable"
    assert result.decision is Decision.ROLLBACK
    first_fail = next(r for r in timeline if r["verdict"] == "fail")
    assert first_fail["gate"] == "cpu", first_fail
    assert first_fail["reason"].startswith("cpu: candidate CPU per request "), first_fail
