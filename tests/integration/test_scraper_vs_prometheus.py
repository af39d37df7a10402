"""The built-in scraper against a real Prometheus scraping the same live /metrics endpoint."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gates.profiles import PROFILES
from gates.prometheus import PrometheusProvider
from gates.provider import Buckets, Counts, Subject
from gates.scraper import ScraperProvider
from tests.support.prom import prometheus

pytestmark = pytest.mark.integration

HTTP = PROFILES["http"]
WINDOW_S = 5.0
RUN_S = 8.0
RATE_PER_S = 200.0  # per version
DURATIONS_S = (0.02, 0.04, 0.06, 0.08, 0.15, 0.2, 0.3, 0.45, 0.7, 1.5)
BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0)
V1 = Subject("shop", "v1")
V2 = Subject("shop", "v2")


def code_of(i: int, version: str) -> str:
    """v1: 5% 500s and 10% 404s; v2: 1% 503s and 10% 404s (a fixed cycle of 100)."""
    if version == "v1" and i % 20 == 0:
        return "500"
    if version == "v2" and i % 100 == 0:
        return "503"
    return "404" if i % 10 == 5 else "200"


@dataclass
class App:
    """A live /metrics endpoint whose counters grow at a known rate."""

    registry: CollectorRegistry
    requests: Counter
    durations: Histogram
    server: ThreadingHTTPServer
    stop: threading.Event

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def traffic(self, deadline_s: float) -> None:
        """Emit RATE_PER_S requests a second per version until stopped (or the deadline)."""
        began = time.monotonic()
        done = 0
        while not self.stop.wait(0.01):
            elapsed = time.monotonic() - began
            if elapsed > deadline_s:
                return
            due = int(elapsed * RATE_PER_S)
            for i in range(done, due):
                for version in ("v1", "v2"):
                    self.requests.labels("shop", version, code_of(i, version)).inc()
                    self.durations.labels("shop", version).observe(DURATIONS_S[i % 10])
            done = due


def _serve(registry: CollectorRegistry) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@pytest.fixture
def app() -> Iterator[App]:
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests_total", "Requests.", ["app", "version", "code"], registry=registry
    )
    durations = Histogram(
        "http_request_duration_seconds",
        "Request durations.",
        ["app", "version"],
        buckets=BUCKETS_S,
        registry=registry,
    )
    for version in ("v1", "v2"):  # every series exists from the first scrape on
        durations.labels("shop", version)
        for code in ("200", "404", "500", "503"):
            requests.labels("shop", version, code)
    server = _serve(registry)
    served = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    served.start()
    bed = App(registry, requests, durations, server, threading.Event())
    traffic = threading.Thread(target=bed.traffic, args=(60.0,))
    traffic.start()
    try:
        yield bed
    finally:
        bed.stop.set()
        traffic.join(5)
        server.shutdown()
        served.join(5)
        server.server_close()


def _wait_up(prometheus_url: str, job: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{prometheus_url}/api/v1/targets", timeout=5)
        for t in r.json()["data"]["activeTargets"]:
            if t["labels"].get("job") == job and t["health"] == "up":
                return
        time.sleep(0.2)
    raise AssertionError(f"prometheus target {job} not up after {timeout_s}s")


def _ratio(c: Counts) -> float:
    return c.errors / c.requests


def _shares(b: Buckets) -> list[float]:
    total = b[-1][1]
    return [n / total for _, n in b]


def test_scraper_agrees_with_prometheus(app: App) -> None:
    with prometheus(targets={"shop": app.address}, scrape_interval="1s") as server:
        _wait_up(server.url, "shop")
        prom = PrometheusProvider(server.url, timeout_s=5)
        scraper = ScraperProvider([f"http://{app.address}/metrics"], interval_s=1.0)
        try:
            with scraper:
                # Half an interval past a scrape: none of ours is in flight at that instant.
                time.sleep(RUN_S + 0.5)
                at = datetime.now(UTC)
                ours = scraper.counts(HTTP, [V1, V2], WINDOW_S, at)
                ours_buckets = scraper.buckets(HTTP, [V1, V2], WINDOW_S, at)
            theirs = prom.counts(HTTP, [V1, V2], WINDOW_S, at)
            theirs_buckets = prom.buckets(HTTP, [V1, V2], WINDOW_S, at)
            assert scraper.target_errors() == {f"http://{app.address}/metrics": None}
        finally:
            prom.close()

    assert set(ours) == set(theirs) == {V1, V2}
    expected = {V1: 0.05, V2: 0.01}
    for subject in (V1, V2):
        mine, prometheus_says = ours[subject], theirs[subject]
        # The ratios agree closely; the counts less so (Prometheus extrapolates to the window).
        assert abs(_ratio(mine) - _ratio(prometheus_says)) <= 0.015, (mine, prometheus_says)
        assert abs(_ratio(mine) - expected[subject]) <= 0.015, mine
        assert mine.requests == pytest.approx(prometheus_says.requests, rel=0.25)
        assert mine.requests == pytest.approx(RATE_PER_S * WINDOW_S, rel=0.25)

    assert set(ours_buckets) == set(theirs_buckets) == {V1, V2}
    for subject in (V1, V2):
        mine_b, prom_b = ours_buckets[subject], theirs_buckets[subject]
        assert [le for le, _ in mine_b] == [*BUCKETS_S, math.inf]
        assert [le for le, _ in prom_b] == [*BUCKETS_S, math.inf]
        assert mine_b[-1][1] == pytest.approx(prom_b[-1][1], rel=0.25)
        assert mine_b[-1][1] == pytest.approx(ours[subject].requests, rel=0.02)
        for a, b in zip(_shares(mine_b), _shares(prom_b), strict=True):
            assert abs(a - b) <= 0.03, (mine_b, prom_b)
