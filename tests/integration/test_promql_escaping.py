"""Label values holding quotes, backslashes and newlines, against a real Prometheus.

The series are backfilled with promtool; the queries go through PrometheusProvider, so
the escaping is checked by Prometheus's own PromQL parser and RE2.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gates.profiles import get_profile
from gates.prometheus import PrometheusProvider
from gates.promql import render
from gates.provider import Subject
from tests.support.prom import backfill, prometheus

pytestmark = pytest.mark.integration

WEIRD = 'we"ird\\app\n'
UNICODE = "ünïcødé ✓"
PLAIN = "plain"
APPS = (WEIRD, UNICODE, PLAIN)

STEP_S = 15
MINUTES = 20
RATES = {"200": 8.0, "404": 1.0, "500": 1.0}  # per second: 10 requests, 1 error, 1 client error
BUCKETS = {"0.1": 0.5, "0.5": 0.9, "+Inf": 1.0}  # share of requests at or under each bound

HTTP = get_profile("http")
WINDOW_S = 120.0
EXPECTED_REQUESTS = sum(RATES.values()) * WINDOW_S
EXPECTED_ERRORS = RATES["500"] * WINDOW_S


def om_escape(value: str) -> str:
    """A label value in OpenMetrics text: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _history(t0: float) -> str:
    counters: list[str] = []
    buckets: list[str] = []
    n = MINUTES * 60 // STEP_S
    for app in APPS:
        labels = f'app="{om_escape(app)}",version="v2"'
        for code, rate in RATES.items():
            counters += [
                f'http_requests_total{{{labels},code="{code}"}} '
                f"{rate * STEP_S * i:.3f} {t0 + STEP_S * i:.3f}"
                for i in range(n + 1)
            ]
        total = sum(RATES.values())
        for le, share in BUCKETS.items():
            buckets += [
                f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                f"{total * share * STEP_S * i:.3f} {t0 + STEP_S * i:.3f}"
                for i in range(n + 1)
            ]
    return (
        "# HELP http_requests Requests served.\n# TYPE http_requests counter\n"
        + "\n".join(counters)
        + "\n# HELP http_request_duration_seconds Request duration.\n"
        "# TYPE http_request_duration_seconds histogram\n" + "\n".join(buckets) + "\n# EOF\n"
    )


@pytest.fixture(scope="module")
def t0() -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=3)


@pytest.fixture(scope="module")
def provider(
    t0: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusProvider]:
    data = tmp_path_factory.mktemp("prom-escaping") / "data"
    backfill(data, _history(t0.timestamp()))
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        p = PrometheusProvider(server.url)
        try:
            yield p
        finally:
            p.close()


@pytest.fixture(scope="module")
def at(t0: datetime) -> datetime:
    return t0 + timedelta(minutes=10)


def _subject(app: str) -> Subject:
    return Subject(app=app, version="v2")


@pytest.mark.parametrize("app", APPS, ids=["quote-backslash-newline", "unicode", "plain"])
def test_counts_find_the_exact_label_value(
    provider: PrometheusProvider, at: datetime, app: str
) -> None:
    got = provider.counts(HTTP, [_subject(app)], WINDOW_S, at)
    assert list(got) == [_subject(app)]
    c = got[_subject(app)]
    assert c.requests == pytest.approx(EXPECTED_REQUESTS, rel=0.02)
    assert c.errors == pytest.approx(EXPECTED_ERRORS, rel=0.02), "4xx must not count"


def test_many_subjects_share_one_regex_query(provider: PrometheusProvider, at: datetime) -> None:
    subjects = [_subject(app) for app in APPS]
    before = provider.calls
    got = provider.counts(HTTP, subjects, WINDOW_S, at)
    assert provider.calls == before + 1
    assert set(got) == set(subjects)
    for c in got.values():
        assert c.requests == pytest.approx(EXPECTED_REQUESTS, rel=0.02)


@pytest.mark.parametrize(
    "app",
    [
        pytest.param("we", id="prefix-of-the-value"),
        pytest.param('we"ird\\app', id="value-without-its-newline"),
        pytest.param('we"ird\\\\app\n', id="backslash-doubled"),
        pytest.param('"} or vector(1) #', id="closes-matcher-and-injects-vector"),
        pytest.param('", app=~".+', id="adds-a-match-anything-matcher"),
        pytest.param("\\", id="lone-backslash"),
        pytest.param(".*", id="regex-wildcard"),
    ],
)
def test_other_values_find_nothing_and_do_not_error(
    provider: PrometheusProvider, at: datetime, app: str
) -> None:
    assert provider.counts(HTTP, [_subject(app)], WINDOW_S, at) == {}
    assert provider.buckets(HTTP, [_subject(app)], WINDOW_S, at) == {}
    # Next to a real subject the selector is a regex alternation: it must stay literal.
    got = provider.counts(HTTP, [_subject(app), _subject(PLAIN)], WINDOW_S, at)
    assert set(got) == {_subject(PLAIN)}


CUSTOM = 'sum(increase(http_requests_total{app="$app",version="$version"}[$window]))'


@pytest.mark.parametrize(
    ("app", "found"),
    [
        pytest.param(WEIRD, True, id="exact-value-found"),
        pytest.param('"} or vector(1) #', False, id="injected-vector-not-evaluated"),
        pytest.param('"} or on() vector(1) or x{a="', False, id="balanced-injection-not-evaluated"),
        pytest.param("we", False, id="prefix-not-found"),
    ],
)
def test_rendered_custom_query(
    provider: PrometheusProvider, at: datetime, app: str, found: bool
) -> None:
    promql = render(CUSTOM, {"app": app, "version": "v2", "window": WINDOW_S})
    rows = provider.query(promql, at)
    if found:
        [(labels, value)] = rows
        assert labels == {}
        assert value == pytest.approx(EXPECTED_REQUESTS, rel=0.02)
    else:
        assert rows == []


def test_buckets_for_the_weird_value(provider: PrometheusProvider, at: datetime) -> None:
    got = provider.buckets(HTTP, [_subject(WEIRD)], WINDOW_S, at)
    [(subject, buckets)] = got.items()
    assert subject == _subject(WEIRD)
    assert [le for le, _ in buckets] == [0.1, 0.5, float("inf")]
    assert buckets[-1][1] == pytest.approx(EXPECTED_REQUESTS, rel=0.02)
    assert buckets[1][1] / buckets[-1][1] == pytest.approx(0.9)
