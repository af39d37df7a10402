"""Unit tests of the built-in scraper provider against in-process fake /metrics endpoints."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gatekeeper.domain.errors import InvalidInput, ProviderError
from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.profiles import PROFILES, Profile
from gates.provider import Buckets, Counts, Provider, Subject
from gates.scraper import QUERY_REFUSED, ScraperProvider, normalize_target, parse_exposition
from gates.spec import Comparison, GateSet, GateSpec, Metric
from tests.support.fakes import TickingClock

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HTTP = PROFILES["http"]
ISTIO = PROFILES["istio"]
POD_A = "http://pod-a:9100/metrics"
POD_B = "http://pod-b:9100/metrics"
A1 = Subject("shop", "v1")
A2 = Subject("shop", "v2")
NOBODY = Subject("ghost", "v9")

Series = tuple[str, Mapping[str, str], float]
Frame = Mapping[str, Sequence[Series] | None]  # target -> its samples; None: it fails


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def req(app: str, version: str, code: str, value: float) -> Series:
    return ("http_requests_total", {"app": app, "version": version, "code": code}, value)


def bucket(app: str, version: str, le: str, value: float) -> Series:
    labels = {"app": app, "version": version, "le": le}
    return ("http_request_duration_seconds_bucket", labels, value)


def exposition(samples: Sequence[Series]) -> str:
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    for name, labels, value in samples:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {value!r}")
    return "\n".join(lines) + "\n"


@dataclass
class FakeTargets:
    """The /metrics endpoints: whatever the current frame says each target shows."""

    frame: Frame = field(default_factory=dict)
    calls: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        url = str(request.url)
        if url not in self.frame:
            return httpx.Response(404, text="not found")
        samples = self.frame[url]
        if samples is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, text=exposition(samples))

    def provider(
        self,
        targets: Sequence[str],
        *,
        interval_s: float = 1.0,
        retention_s: float = 3600.0,
        metrics: Iterable[str] | None = None,
    ) -> ScraperProvider:
        return ScraperProvider(
            targets,
            interval_s=interval_s,
            retention_s=retention_s,
            metrics=metrics,
            transport=httpx.MockTransport(self.handler),
            clock=TickingClock(lambda: T0),
        )


def scraped(
    frames: Sequence[Frame],
    targets: Sequence[str] = (POD_A,),
    *,
    interval_s: float = 1.0,
    retention_s: float = 3600.0,
    metrics: Iterable[str] | None = None,
) -> ScraperProvider:
    """A provider that scraped frame i at T0 + i seconds."""
    fake = FakeTargets()
    provider = fake.provider(
        targets, interval_s=interval_s, retention_s=retention_s, metrics=metrics
    )
    for i, frame in enumerate(frames):
        fake.frame = frame
        provider.scrape_once(at(i))
    return provider


def steady(
    seconds: int, per_code: Mapping[str, float], *, app: str = "shop", version: str = "v1"
) -> list[Frame]:
    """One target whose counters grow at ``per_code`` requests per second."""
    return [
        {POD_A: [req(app, version, code, rate * t) for code, rate in per_code.items()]}
        for t in range(seconds + 1)
    ]


# -- counts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountCase:
    name: str
    frames: list[Frame]
    window_s: float
    at_s: float
    want: dict[Subject, Counts]
    subjects: tuple[Subject, ...] = (A1, NOBODY)
    targets: tuple[str, ...] = (POD_A,)
    profile: Profile = HTTP


def _reset_frames() -> list[Frame]:
    values = [100, 110, 120, 130, 4, 14, 24]  # the process restarted after 130
    return [{POD_A: [req("shop", "v1", "200", v)]} for v in values]


def _two_instances() -> list[Frame]:
    frames: list[Frame] = []
    for t in range(11):
        frames.append(
            {
                POD_A: [
                    req("shop", "v1", "200", 10 * t),
                    req("shop", "v1", "500", 1 * t),
                    req("shop", "v1", "503", 2 * t),
                    req("shop", "v2", "200", 7 * t),
                ],
                POD_B: [
                    req("shop", "v1", "200", 1000 + 20 * t),
                    req("shop", "v1", "404", 3 * t),
                    req("shop", "v1", "500", 50 + 1 * t),
                ],
            }
        )
    return frames


def _slow_then_fast() -> list[Frame]:
    value, frames = 0.0, list[Frame]()
    for t in range(11):
        frames.append({POD_A: [req("shop", "v1", "200", value)]})
        value += 100 if t < 5 else 10
    return frames


def _born_inside_window() -> list[Frame]:
    frames: list[Frame] = [{POD_A: []} for _ in range(8)]
    frames += [{POD_A: [req("shop", "v1", "200", v)]} for v in (7, 17, 27)]
    return frames


def _failing_after(ok_until: int, seconds: int = 10) -> list[Frame]:
    return [
        {POD_A: [req("shop", "v1", "200", 10 * t)] if t <= ok_until else None}
        for t in range(seconds + 1)
    ]


def _gap(first_missing: int, last_missing: int) -> list[Frame]:
    return [
        {POD_A: None if first_missing <= t <= last_missing else [req("shop", "v1", "200", 10 * t)]}
        for t in range(11)
    ]


def _istio() -> list[Frame]:
    frames: list[Frame] = []
    for t in range(6):
        common = {"destination_workload_namespace": "prod", "destination_workload": "shop-v1"}
        frames.append(
            {
                POD_A: [
                    ("istio_requests_total", {**common, "response_code": "200"}, 9.0 * t),
                    ("istio_requests_total", {**common, "response_code": "502"}, 1.0 * t),
                    ("http_requests_total", {"app": "shop", "version": "v1", "code": "500"}, t),
                ]
            }
        )
    return frames


COUNT_CASES = [
    CountCase(
        "steady traffic, 5s window over 10s of samples",
        steady(10, {"200": 10, "500": 1}),
        window_s=5,
        at_s=10,
        want={A1: Counts(requests=55, errors=5)},
    ),
    CountCase(
        "counter reset mid-window counts the new value in full",
        _reset_frames(),
        window_s=5,
        at_s=6,
        want={A1: Counts(requests=10 + 10 + 4 + 10 + 10, errors=0)},
    ),
    CountCase(
        "two instances and several codes are summed; 5xx are errors",
        _two_instances(),
        window_s=4,
        at_s=10,
        subjects=(A1, A2, NOBODY),
        targets=(POD_A, POD_B),
        want={
            A1: Counts(requests=4 * (10 + 1 + 2 + 20 + 3 + 1), errors=4 * (1 + 2 + 1)),
            A2: Counts(requests=4 * 7, errors=0),
        },
    ),
    CountCase(
        "4xx are the client's and not errors",
        steady(10, {"200": 5, "404": 3, "429": 2}),
        window_s=5,
        at_s=10,
        want={A1: Counts(requests=50, errors=0)},
    ),
    CountCase(
        "no series: absent",
        steady(10, {"200": 5}),
        window_s=5,
        at_s=10,
        subjects=(NOBODY, A2),
        want={},
    ),
    CountCase(
        "window clipping: the fast start lies before the window",
        _slow_then_fast(),
        window_s=3,
        at_s=10,
        want={A1: Counts(requests=30, errors=0)},
    ),
    CountCase(
        "window clipping: samples after `at` are not counted",
        _slow_then_fast(),
        window_s=5,
        at_s=5,
        want={A1: Counts(requests=500, errors=0)},
    ),
    CountCase(
        "window clipping: `at` between scrapes uses the last sample at or before it",
        steady(10, {"200": 10}),
        window_s=4,
        at_s=7.5,
        want={A1: Counts(requests=40, errors=0)},
    ),
    CountCase(
        "a series born on a target that answered before starts from 0 at that scrape",
        _born_inside_window(),
        window_s=5,
        at_s=10,
        want={A1: Counts(requests=27, errors=0)},
    ),
    CountCase(
        "a series of a target's first scrape starts from its first sample",
        _born_inside_window()[8:],
        window_s=5,
        at_s=2,
        want={A1: Counts(requests=20, errors=0)},
    ),
    CountCase(
        "one sample is not an increase",
        steady(0, {"200": 10}),
        window_s=5,
        at_s=0,
        want={},
    ),
    CountCase(
        "a target failing for longer than the window: no data",
        _failing_after(ok_until=3),
        window_s=5,
        at_s=10,
        want={},
    ),
    CountCase(
        "a target failing inside the window: the steps around the gap still count",
        _failing_after(ok_until=7),
        window_s=5,
        at_s=10,
        want={A1: Counts(requests=20, errors=0)},
    ),
    CountCase(
        "a gap across the window start counts only its share inside the window",
        _gap(3, 7),  # samples at 2 and 8: 60 requests, half of the gap lies inside (5, 10]
        window_s=5,
        at_s=10,
        want={A1: Counts(requests=30 + 20, errors=0)},
    ),
    CountCase(
        "istio profile: selector on namespace and workload, response_code label",
        _istio(),
        window_s=3,
        at_s=5,
        subjects=(Subject("shop", "v1", "prod"), Subject("shop", "v1", "default")),
        profile=ISTIO,
        want={Subject("shop", "v1", "prod"): Counts(requests=30, errors=3)},
    ),
]


@pytest.mark.parametrize("case", COUNT_CASES, ids=lambda c: c.name)
def test_counts(case: CountCase) -> None:
    provider = scraped(case.frames, case.targets)
    got = provider.counts(case.profile, case.subjects, case.window_s, at(case.at_s))
    assert_counts(got, case.want)


def assert_counts(got: Mapping[Subject, Counts], want: Mapping[Subject, Counts]) -> None:
    assert set(got) == set(want)
    for subject, c in want.items():
        assert got[subject].requests == pytest.approx(c.requests), subject
        assert got[subject].errors == pytest.approx(c.errors), subject


def test_counts_match_subjects_exactly_not_by_prefix() -> None:
    frames = steady(4, {"200": 10}, app="shop-admin")
    provider = scraped(frames)
    assert provider.counts(HTTP, [A1], 2, at(4)) == {}


def test_counts_range_evaluates_each_step_and_leaves_out_points_without_data() -> None:
    provider = scraped(steady(10, {"200": 10, "500": 2}))
    got = provider.counts_range(HTTP, [A1, NOBODY], 2, at(-2), at(10), 3)
    # No sample before 0; at 1 the window holds the first two samples only.
    assert got[A1] == [
        (at(1), Counts(requests=12, errors=2)),
        (at(4), Counts(requests=24, errors=4)),
        (at(7), Counts(requests=24, errors=4)),
        (at(10), Counts(requests=24, errors=4)),
    ]
    assert NOBODY not in got


def test_counts_range_includes_the_end_when_steps_divide_the_range() -> None:
    provider = scraped(steady(10, {"200": 1}))
    got = provider.counts_range(HTTP, [A1], 1, at(2), at(10), 0.5)
    times = [t for t, _ in got[A1]]
    assert times[0] == at(2) and times[-1] == at(10) and len(times) == 17


# -- buckets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketCase:
    name: str
    frames: list[Frame]
    want: dict[Subject, Buckets]
    window_s: float = 5
    at_s: float = 10
    targets: tuple[str, ...] = (POD_A,)
    profile: Profile = HTTP
    subjects: tuple[Subject, ...] = (A1, NOBODY)


def _histogram(per_second: Mapping[str, float], *, inf: bool = True) -> list[Frame]:
    """Cumulative buckets growing by ``per_second[le]`` per second, from a base of 1000."""
    return [
        {
            POD_A: [
                bucket("shop", "v1", le, 1000 + rate * t)
                for le, rate in per_second.items()
                if inf or le != "+Inf"
            ]
        }
        for t in range(11)
    ]


def _histogram_two_instances() -> list[Frame]:
    frames: list[Frame] = []
    for t in range(11):
        frames.append(
            {
                POD_A: [
                    bucket("shop", "v1", "0.1", 5 * t),
                    bucket("shop", "v1", "0.5", 8 * t),
                    bucket("shop", "v1", "+Inf", 10 * t),
                ],
                POD_B: [
                    bucket("shop", "v1", "0.1", 1 * t),
                    bucket("shop", "v1", "0.5", 1 * t),
                    bucket("shop", "v1", "+Inf", 2 * t),
                    req("shop", "v1", "200", 12 * t),
                ],
            }
        )
    return frames


def _histogram_ms() -> list[Frame]:
    frames: list[Frame] = []
    for t in range(11):
        labels = {"destination_workload_namespace": "default", "destination_workload": "shop-v1"}
        frames.append(
            {
                POD_A: [
                    ("istio_request_duration_milliseconds_bucket", {**labels, "le": le}, n * t)
                    for le, n in (("250", 3.0), ("1000", 4.0), ("+Inf", 4.0))
                ]
            }
        )
    return frames


def _histogram_reset() -> list[Frame]:
    values = [(50, 60), (55, 66), (60, 72), (2, 3), (7, 9), (12, 15)]
    return [
        {POD_A: [bucket("shop", "v1", "0.25", a), bucket("shop", "v1", "+Inf", b)]}
        for a, b in values
    ]


BUCKET_CASES = [
    BucketCase(
        "deltas per le, ascending, +Inf last",
        _histogram({"+Inf": 10, "0.5": 9, "0.1": 6, "1": 9.5}),
        want={A1: ((0.1, 30), (0.5, 45), (1.0, 47.5), (math.inf, 50))},
    ),
    BucketCase(
        "two instances are summed by le",
        _histogram_two_instances(),
        targets=(POD_A, POD_B),
        want={A1: ((0.1, 30), (0.5, 45), (math.inf, 60))},
    ),
    BucketCase(
        "no +Inf bucket: absent",
        _histogram({"0.1": 1, "+Inf": 2}, inf=False),
        want={},
    ),
    BucketCase(
        "inconsistent buckets are made monotone",
        _histogram({"0.1": 4, "0.5": 3, "+Inf": 5}),
        want={A1: ((0.1, 20), (0.5, 20), (math.inf, 25))},
    ),
    BucketCase(
        "milliseconds become seconds",
        _histogram_ms(),
        profile=ISTIO,
        subjects=(A1,),
        want={A1: ((0.25, 15), (1.0, 20), (math.inf, 20))},
    ),
    BucketCase(
        "a bucket reset counts the new value",
        _histogram_reset(),
        at_s=5,
        want={A1: ((0.25, 5 + 5 + 2 + 5 + 5), (math.inf, 6 + 6 + 3 + 6 + 6))},
    ),
]


@pytest.mark.parametrize("case", BUCKET_CASES, ids=lambda c: c.name)
def test_buckets(case: BucketCase) -> None:
    provider = scraped(case.frames, case.targets)
    got = provider.buckets(case.profile, case.subjects, case.window_s, at(case.at_s))
    assert set(got) == set(case.want)
    for subject, want in case.want.items():
        assert [le for le, _ in got[subject]] == [le for le, _ in want]
        assert [n for _, n in got[subject]] == pytest.approx([n for _, n in want])


# -- the rest of the protocol ---------------------------------------------------------------


def test_query_needs_prometheus() -> None:
    provider = scraped([])
    with pytest.raises(ProviderError) as e:
        provider.query('sum(rate(http_requests_total{app="shop"}[1m]))', T0)
    assert str(e.value) == QUERY_REFUSED


def test_scrape_interval_is_the_configured_interval() -> None:
    assert scraped([]).scrape_interval() == 1.0
    assert scraped([], interval_s=2.5, retention_s=60).scrape_interval() == 2.5


@pytest.mark.parametrize(
    ("interval_s", "retention_s"),
    [(0, 3600), (-1, 3600), (10, 15)],
    ids=["zero interval", "negative interval", "retention under two intervals"],
)
def test_bad_settings_are_refused(interval_s: float, retention_s: float) -> None:
    with pytest.raises(InvalidInput):
        ScraperProvider([], interval_s=interval_s, retention_s=retention_s)


def test_satisfies_the_provider_protocol_for_the_evaluator() -> None:
    frames: list[Frame] = []
    for t in range(131):
        frames.append(
            {
                POD_A: [
                    req("shop", "v2", "200", 9 * t),
                    req("shop", "v2", "500", 1 * t),
                    bucket("shop", "v2", "0.1", 10 * t),
                    bucket("shop", "v2", "+Inf", 10 * t),
                ]
            }
        )
    provider: Provider = scraped(frames)
    gates = GateSet(
        gates=(
            GateSpec(name="abort", metric=Metric.ERROR_RATIO, threshold=0.05, window=120),
            GateSpec(
                name="latency",
                metric=Metric.LATENCY,
                comparison=Comparison.GT,
                threshold=0.5,
                window=60,
            ),
            GateSpec(name="custom", query='sum(up{app="$app"})', threshold=1),
        )
    )
    results = GateEvaluator(gates, provider).evaluate(Release(candidate=A2, started=at(0)), at(130))
    by_gate = {r.gate: r for r in results}
    assert by_gate["abort"].verdict is Verdict.FAIL
    assert by_gate["abort"].value == pytest.approx(0.1)
    assert by_gate["latency"].verdict is Verdict.PASS
    assert "needs Prometheus" in by_gate["custom"].reason


# -- targets, failures, retention ------------------------------------------------------------


def test_a_failing_target_is_logged_and_the_others_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTargets()
    provider = fake.provider([POD_A, POD_B])
    caplog.set_level(logging.INFO, logger="gates.scraper")
    for t in range(6):
        fake.frame = {
            POD_A: None if t >= 2 else [req("shop", "v1", "200", 10 * t)],
            POD_B: [req("shop", "v1", "200", 5 * t)],
        }
        errors = provider.scrape_once(at(t))
        assert errors[POD_B] is None
        assert (errors[POD_A] is not None) == (t >= 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and POD_A in warnings[0].getMessage()
    assert provider.counts(HTTP, [A1], 2, at(5)) == {A1: Counts(requests=10, errors=0)}
    assert provider.target_errors()[POD_A] is not None

    fake.frame = {POD_A: [req("shop", "v1", "200", 60)], POD_B: [req("shop", "v1", "200", 30)]}
    provider.scrape_once(at(6))
    assert provider.target_errors() == {POD_A: None, POD_B: None}
    assert any("answers again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, "oops"), (200, 'http_requests_total{app="shop" 1\n'), (200, "http_requests_total\n")],
    ids=["HTTP 500", "unterminated labels", "no value"],
)
def test_a_bad_answer_is_a_failed_scrape(status: int, body: str) -> None:
    provider = ScraperProvider(
        [POD_A], transport=httpx.MockTransport(lambda _: httpx.Response(status, text=body))
    )
    errors = provider.scrape_once(T0)
    assert errors[POD_A] is not None


def test_targets_can_be_added_and_removed() -> None:
    fake = FakeTargets()
    provider = fake.provider([])
    assert provider.add_target("pod-a:9100") == POD_A
    provider.add_target(POD_B)
    assert provider.targets == [POD_A, POD_B]
    provider.remove_target("http://pod-b:9100/")
    assert provider.targets == [POD_A]
    for t in range(4):
        fake.frame = {POD_A: [req("shop", "v1", "200", t)], POD_B: [req("shop", "v1", "200", t)]}
        assert list(provider.scrape_once(at(t))) == [POD_A]
    assert provider.counts(HTTP, [A1], 3, at(3)) == {A1: Counts(requests=3, errors=0)}


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("pod-a:9100", "http://pod-a:9100/metrics"),
        ("http://pod-a:9100/", "http://pod-a:9100/metrics"),
        ("https://pod-a/custom/path", "https://pod-a/custom/path"),
        ("http://127.0.0.1:8000/metrics", "http://127.0.0.1:8000/metrics"),
    ],
)
def test_normalize_target(given: str, want: str) -> None:
    assert normalize_target(given) == want


@pytest.mark.parametrize("bad", ["", "ftp://pod-a/metrics", "http://"])
def test_normalize_target_refuses_non_http(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_target(bad)


def test_old_samples_are_dropped_after_retention() -> None:
    provider = scraped(steady(30, {"200": 10}), retention_s=10)
    # Kept: samples after 30 - 10 = 20; a 25s window starts from the first kept sample.
    assert provider.counts(HTTP, [A1], 25, at(30)) == {A1: Counts(requests=90, errors=0)}
    assert provider.counts(HTTP, [A1], 5, at(15)) == {}


def test_series_of_a_silent_target_disappear_after_retention() -> None:
    frames: list[Frame] = [{POD_A: [req("shop", "v1", "200", t)]} for t in range(3)]
    frames += [{POD_A: []} for _ in range(20)]
    provider = scraped(frames, retention_s=10)
    assert provider.counts(HTTP, [A1], 100, at(22)) == {}
    assert not provider._series


def test_only_the_metrics_gates_read_are_kept_unless_told() -> None:
    frames: list[Frame] = [
        {
            POD_A: [
                req("shop", "v1", "200", t),
                ("process_cpu_seconds_total", {}, float(t)),
                ("go_goroutines", {}, 7.0),
            ]
        }
        for t in range(3)
    ]
    assert set(scraped(frames)._series) == {"http_requests_total", "process_cpu_seconds_total"}
    chosen = scraped(frames, metrics=["go_goroutines"])
    assert set(chosen._series) == {"go_goroutines"}


def test_a_clock_going_backwards_does_not_reorder_history() -> None:
    fake = FakeTargets()
    provider = fake.provider([POD_A])
    for t, value in ((0, 0), (1, 10), (2, 20), (1.5, 999), (3, 30)):
        fake.frame = {POD_A: [req("shop", "v1", "200", value)]}
        provider.scrape_once(at(t))
    assert provider.counts(HTTP, [A1], 3, at(3)) == {A1: Counts(requests=30, errors=0)}


def test_without_now_each_target_is_stamped_by_the_clock_when_stored() -> None:
    fake = FakeTargets()
    ticks = iter([0.0, 0.25, 1.0, 1.25, 2.0, 2.25, 3.0, 3.25])
    provider = ScraperProvider(
        [POD_A, POD_B],
        clock=TickingClock(lambda: at(next(ticks))),
        transport=httpx.MockTransport(fake.handler),
    )
    for t in range(4):
        fake.frame = {POD_A: [req("shop", "v1", "200", 10 * t)], POD_B: []}
        assert provider.scrape_once() == {POD_A: None, POD_B: None}
    series = provider._series["http_requests_total"]
    (only,) = series.values()
    stamps = sorted(x - T0.timestamp() for x in only.times)
    assert len(stamps) == 4 and all(
        s in (0.0, 0.25, 1.0, 1.25, 2.0, 2.25, 3.0, 3.25) for s in stamps
    )
    assert provider.counts(HTTP, [A1], 3, at(3.25)) == {A1: Counts(requests=30, errors=0)}
    provider.close()


# -- the background thread ------------------------------------------------------------------


def test_the_thread_scrapes_with_the_clock_and_stops() -> None:
    scraped_enough = threading.Event()
    ticks = iter(range(1000))
    calls = 0

    def clock() -> datetime:
        return at(next(ticks))

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls >= 4:
            scraped_enough.set()
        return httpx.Response(200, text=exposition([req("shop", "v1", "200", 10.0 * calls)]))

    provider = ScraperProvider(
        [POD_A], interval_s=0.01, clock=TickingClock(clock), transport=httpx.MockTransport(handler)
    )
    with provider:
        assert scraped_enough.wait(timeout=10)
    assert provider._thread is None
    done = provider.scrapes
    assert done >= 4 and calls == done
    # Each scrape took the clock's next tick: samples one second apart, ten requests each.
    assert provider.counts(HTTP, [A1], 3, at(done - 1)) == {A1: Counts(requests=30, errors=0)}


def test_stop_joins_the_thread_and_scraping_by_hand_still_works() -> None:
    fake = FakeTargets(frame={POD_A: [req("shop", "v1", "200", 0)]})
    provider = fake.provider([POD_A])
    provider.start()
    provider.start()  # a second start is a no-op
    provider.stop()
    assert provider._thread is None
    done = provider.scrapes
    fake.frame = {POD_A: [req("shop", "v1", "200", 5)]}
    assert provider.scrape_once(at(10)) == {POD_A: None}
    assert provider.scrapes == done + 1
    provider.close()


def test_scrape_errors_in_the_thread_do_not_kill_it(caplog: pytest.LogCaptureFixture) -> None:
    scraped_enough = threading.Event()
    calls = 0

    def clock() -> datetime:
        nonlocal calls
        calls += 1
        if calls >= 3:
            scraped_enough.set()
        if calls == 1:
            raise RuntimeError("clock broke")
        return at(calls)

    provider = ScraperProvider(
        [POD_A], interval_s=0.01, clock=TickingClock(clock), transport=_empty()
    )
    provider.start()
    try:
        assert scraped_enough.wait(timeout=10)
    finally:
        provider.close()
    assert any("scrape failed" in r.getMessage() for r in caplog.records)


def _empty() -> httpx.MockTransport:
    return httpx.MockTransport(lambda _: httpx.Response(200, text=""))


# -- the exposition parser ------------------------------------------------------------------

PARSE_CASES: list[tuple[str, str, list[tuple[str, dict[str, str], float]]]] = [
    (
        "escapes in label values",
        'm{a="x\\"y",b="back\\\\slash",c="new\\nline"} 1\n',
        [("m", {"a": 'x"y', "b": "back\\slash", "c": "new\nline"}, 1.0)],
    ),
    (
        "a counter without _total keeps its name",
        '# TYPE envoy_cluster_upstream_rq counter\nenvoy_cluster_upstream_rq{x="1"} 5\n',
        [("envoy_cluster_upstream_rq", {"x": "1"}, 5.0)],
    ),
    (
        "timestamps, exemplars, spacing and trailing commas",
        'a 1 1700000000000\nb{ k = "v", } 2.5e3 # {trace_id="1"} 3\n  c +Inf\n# EOF\n',
        [("a", {}, 1.0), ("b", {"k": "v"}, 2500.0), ("c", {}, math.inf)],
    ),
    ("a hash in a label value", 'd{k="#1 } x"} 7\n', [("d", {"k": "#1 } x"}, 7.0)]),
]


@pytest.mark.parametrize(("name", "text", "want"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_exposition(
    name: str, text: str, want: list[tuple[str, dict[str, str], float]]
) -> None:
    assert list(parse_exposition(text)) == want


@pytest.mark.parametrize("text", ['m{a="1"\n', "m{a} 1\n", "m{a=1} 1\n", "m\n", "m x\n"])
def test_parse_exposition_rejects_malformed_lines(text: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        list(parse_exposition(text))
