"""The gateway guard against a real Prometheus: Traefik's per-backend counter, backfilled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.gateway import GATEWAY_PROFILES, gateway_gate
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import GateSet
from tests.support.prom import LocalPrometheus, backfill, prometheus

pytestmark = pytest.mark.integration

METRIC = "traefik_service_requests_total"
START = datetime(2026, 11, 20, 14, 0, 7, tzinfo=UTC)  # not a round second
MINUTES = 10
# Per second, by backend Service: (requests answered 200, requests answered 502)
BACKENDS = {
    "shop-candidate": (20, 0),  # healthy for 5 minutes, then its pods die (below)
    "shop": (60, 0),  # stable: healthy throughout
    "cart-candidate": (0.5, 0),  # too little traffic to judge: 15 requests in 30s
}


def _series(service: str, code: str, values: list[float]) -> str:
    name = f'service="prod-{service}-http-80@kubernetesgateway"'
    lines = []
    for i, v in enumerate(values):
        t = START + timedelta(seconds=15 * i)
        lines.append(f'{METRIC}{{{name},code="{code}"}} {v} {t.timestamp():.3f}')
    return "\n".join(lines)


def _history() -> str:
    points = MINUTES * 4 + 1
    out = [f"# TYPE {METRIC} counter"]
    for service, (ok, bad) in BACKENDS.items():
        oks = [15.0 * ok * i for i in range(points)]
        bads = [15.0 * bad * i for i in range(points)]
        if service == "shop-candidate":  # dead after 5 minutes: every request a 502
            oks = [15.0 * ok * min(i, 20) for i in range(points)]
            bads = [15.0 * ok * max(0, i - 20) for i in range(points)]
        out.append(_series(service, "200", oks))
        out.append(_series(service, "502", bads))
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    data = tmp_path_factory.mktemp("gateway-history") / "data"
    backfill(data, _history())
    with prometheus(data_dir=data) as server:
        yield server


def _verdict(prom: LocalPrometheus, service: str, at: datetime) -> tuple[Verdict, str]:
    gate = gateway_gate(GATEWAY_PROFILES["traefik"], "prod", service)
    evaluator = GateEvaluator(GateSet(gates=(gate,)), PrometheusProvider(prom.url))
    release = Release(candidate=Subject("shop", "v2", "prod"), started=START)
    [result] = evaluator.evaluate(release, at, [gate])
    return result.verdict, result.reason


@pytest.mark.parametrize(
    ("service", "minute", "verdict"),
    [
        ("shop-candidate", 4, Verdict.PASS),  # healthy
        ("shop-candidate", 6, Verdict.FAIL),  # its pods dead: the gateway answers 502
        ("shop", 6, Verdict.PASS),  # stable's backend is another Service
        ("cart-candidate", 6, Verdict.INCONCLUSIVE),  # under min_requests (20)
        ("nothing-candidate", 6, Verdict.INCONCLUSIVE),  # no series at all
    ],
)
def test_the_gateway_guard_reads_the_candidates_backend_only(
    prom: LocalPrometheus, service: str, minute: int, verdict: Verdict
) -> None:
    got, reason = _verdict(prom, service, START + timedelta(minutes=minute))
    assert got is verdict, reason


def test_a_dead_backend_fails_with_the_ratio_and_the_limit(prom: LocalPrometheus) -> None:
    got, reason = _verdict(prom, "shop-candidate", START + timedelta(minutes=6))
    assert got is Verdict.FAIL
    assert reason == "gateway: value 1 > 0.05 over 30s (600 requests)", reason
