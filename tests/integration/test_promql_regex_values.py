"""Label values inside regex matchers of custom queries, against a real Prometheus.

Versions whose text is also a regex (``1.0``, ``1.2.3+build.7``, ``v1|v2``) sit next to
the versions that regex would match (``100``, ``1x0``, ``1.2.33build.7``, ``v1``): a
rendered ``version=~"$version"`` must find its own series and no other, as judged by
Prometheus's own RE2.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.prometheus import PrometheusProvider
from gates.promql import render
from gates.provider import Subject
from gates.spec import Comparison, GateSet, GateSpec
from tests.support.prom import backfill, prometheus

pytestmark = pytest.mark.integration

STEP_S = 15
MINUTES = 20
WINDOW_S = 120.0

# Each regex-looking version, and the versions its unquoted regex would also match.
DECOYS = {
    "1.0": ["100", "1x0"],
    "1.2.3+build.7": ["1.2.3build.7", "1.2.33build.7"],
    "v*": ["v", "vv"],
    "(v1)": ["v1"],
    "v1|v2": ["v1", "v2"],
    "a\\d": ["a1"],
}
VERSIONS = sorted({v for k, decoys in DECOYS.items() for v in (k, *decoys)})
# A distinct rate per version: a sum that took in another series shows it.
RATE = {version: float(i + 1) for i, version in enumerate(VERSIONS)}

BY_VERSION = (
    'sum by (version) (increase(http_requests_total{app="shop", version=~"$version"}[$window]))'
)
NOT_VERSION = 'count by (version) (http_requests_total{app="shop", version!~ "$version"})'


def om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _history(t0: float) -> str:
    lines = [
        f'http_requests_total{{app="shop",version="{om_escape(version)}",code="200"}} '
        f"{rate * STEP_S * i:.3f} {t0 + STEP_S * i:.3f}"
        for version, rate in RATE.items()
        for i in range(MINUTES * 60 // STEP_S + 1)
    ]
    return "# TYPE http_requests counter\n" + "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def t0() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


@pytest.fixture(scope="module")
def at(t0: datetime) -> datetime:
    return t0 + timedelta(minutes=10)


@pytest.fixture(scope="module")
def provider(
    t0: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusProvider]:
    data = tmp_path_factory.mktemp("prom-regex-values") / "data"
    backfill(data, _history(t0.timestamp()))
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        p = PrometheusProvider(server.url)
        try:
            yield p
        finally:
            p.close()


def _variables(version: str) -> dict[str, str | float]:
    return {"app": "shop", "version": version, "window": WINDOW_S}


def test_every_version_is_in_the_history(provider: PrometheusProvider, at: datetime) -> None:
    rows = provider.query('count by (version) (http_requests_total{app="shop"})', at)
    assert sorted(labels["version"] for labels, _ in rows) == VERSIONS


@pytest.mark.parametrize("version", sorted(DECOYS))
def test_regex_matcher_finds_exactly_the_version(
    provider: PrometheusProvider, at: datetime, version: str
) -> None:
    rows = provider.query(render(BY_VERSION, _variables(version)), at)
    assert [labels["version"] for labels, _ in rows] == [version]
    [(_, value)] = rows
    assert value == pytest.approx(RATE[version] * WINDOW_S, rel=0.02)


@pytest.mark.parametrize("version", sorted(DECOYS))
def test_negative_regex_matcher_leaves_out_exactly_the_version(
    provider: PrometheusProvider, at: datetime, version: str
) -> None:
    rows = provider.query(render(NOT_VERSION, _variables(version)), at)
    assert sorted(labels["version"] for labels, _ in rows) == [v for v in VERSIONS if v != version]


def test_custom_gate_with_a_regex_matcher_judges_the_candidate_alone(
    provider: PrometheusProvider, at: datetime, t0: datetime
) -> None:
    # Each decoy of 1.0 serves more than 1.0 does (rates follow the sorted versions): a
    # threshold at 1.5 times its own count passes 1.0 alone and fails a sum with a decoy.
    own = RATE["1.0"] * WINDOW_S
    gate = GateSpec(
        name="volume",
        query='sum(increase(http_requests_total{app="$app", version=~"$version"}[$window]))',
        comparison=Comparison.GT,
        threshold=own * 1.5,
        window=WINDOW_S,
    )
    evaluator = GateEvaluator(GateSet(gates=(gate,)), provider)
    [result] = evaluator.evaluate(Release(Subject("shop", "1.0"), started=t0), at)
    assert result.verdict is Verdict.PASS, result.reason
    assert result.value == pytest.approx(own, rel=0.02)
