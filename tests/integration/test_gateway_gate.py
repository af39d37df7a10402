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

ROUTER = "traefik_router_requests_total"
SERVICE = "traefik_service_requests_total"
START = datetime(2026, 11, 20, 14, 0, 7, tzinfo=UTC)  # not a round second
POINTS = 10 * 4 + 1  # 10 minutes every 15 s
DEAD_FROM = 20  # the point (5 minutes) from which shop's candidate answers nothing


def _router(route: str) -> str:
    return f'router="httproute-prod-{route}-gw-gateway-bed-ep-web-0-1423a5ac@kubernetesgateway"'


def _service(service: str) -> str:
    return f'service="prod-{service}-http-80@kubernetesgateway"'


def _counter(metric: str, labels: str, code: str, per_point: list[float]) -> str:
    lines, total = [], 0.0
    for i, n in enumerate(per_point):
        total += n
        t = START + timedelta(seconds=15 * i)
        lines.append(f'{metric}{{{labels},code="{code}"}} {total} {t.timestamp():.3f}')
    return "\n".join(lines)


def _history() -> str:
    """Per 15 s. shop: stable serves 900 (1% 500s of its own), its candidate 300 until it dies,
    then the gateway answers those 300 with 503 (no ready endpoint: counted on the route
    only). cart: 5 requests to its candidate, too few. Stable is `shop` / `cart`."""

    def flat(n: float) -> list[float]:
        return [0.0] + [n] * (POINTS - 1)

    alive = [0.0] + [300.0 if i < DEAD_FROM else 0.0 for i in range(1, POINTS)]
    dead = [0.0] + [0.0 if i < DEAD_FROM else 300.0 for i in range(1, POINTS)]
    out = [f"# TYPE {ROUTER} counter", f"# TYPE {SERVICE} counter"]
    out += [
        _counter(
            ROUTER, _router("shop"), "200", [a + 891.0 * (i > 0) for i, a in enumerate(alive)]
        ),
        _counter(ROUTER, _router("shop"), "500", flat(9.0)),
        _counter(ROUTER, _router("shop"), "503", dead),
        _counter(SERVICE, _service("shop"), "200", flat(891.0)),
        _counter(SERVICE, _service("shop"), "500", flat(9.0)),
        _counter(SERVICE, _service("shop-candidate"), "200", alive),
        _counter(ROUTER, _router("cart"), "200", flat(605.0)),
        _counter(SERVICE, _service("cart"), "200", flat(600.0)),
    ]
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    data = tmp_path_factory.mktemp("gateway-history") / "data"
    backfill(data, _history())
    with prometheus(data_dir=data) as server:
        yield server


def _verdict(prom: LocalPrometheus, route: str, at: datetime) -> tuple[Verdict, str]:
    gate = gateway_gate(GATEWAY_PROFILES["traefik"], "prod", route, route)
    evaluator = GateEvaluator(GateSet(gates=(gate,)), PrometheusProvider(prom.url))
    release = Release(candidate=Subject(route, "v2", "prod"), started=START)
    [result] = evaluator.evaluate(release, at, [gate])
    return result.verdict, result.reason


@pytest.mark.parametrize(
    ("route", "minute", "verdict"),
    [
        ("shop", 4, Verdict.PASS),  # healthy; stable's own 1% of 500s are not the candidate's
        ("shop", 7, Verdict.FAIL),  # its pods dead: the gateway answers its share with 503
        ("cart", 7, Verdict.INCONCLUSIVE),  # 10 requests in 30 s: under min_requests (20)
        ("nothing", 7, Verdict.INCONCLUSIVE),  # no series at all
    ],
)
def test_the_gateway_guard_counts_what_the_candidates_users_got(
    prom: LocalPrometheus, route: str, minute: int, verdict: Verdict
) -> None:
    got, reason = _verdict(prom, route, START + timedelta(minutes=minute))
    assert got is verdict, reason


def test_a_dead_backend_fails_with_the_ratio_and_the_limit(prom: LocalPrometheus) -> None:
    got, reason = _verdict(prom, "shop", START + timedelta(minutes=7))
    assert got is Verdict.FAIL
    assert reason == "gateway: value 1 > 0.05 over 30s (600 requests)", reason
