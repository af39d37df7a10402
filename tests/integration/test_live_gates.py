"""The live gate loop against a real Prometheus scraping a real service every second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Verdict
from gatekeeper.targets.local.demo_service import Behaviour, DemoServer
from gatekeeper.targets.local.loadgen import LoadGenerator
from gates.evaluate import GateEvaluator, Release
from gates.live import LiveGates
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import parse_gate_set
from tests.support.prom import free_port, prometheus, wait_for_target_up

pytestmark = pytest.mark.integration

SCRAPE_S = 1.0


@pytest.fixture
def service() -> Iterator[DemoServer]:
    server = DemoServer(
        ("127.0.0.1", free_port()),
        app="shop",
        version="v2",
        behaviour=Behaviour(error_rate=0.0, latency_ms=2, latency_jitter_ms=1),
        seed=7,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_flip_to_eight_percent_errors_fails_within_three_scrape_intervals(service: DemoServer):
    """A running version flips from healthy to 8% errors. The abort gate here uses a 2s
    window: the shipped 2m window would be diluted by two minutes of healthy history after
    such a flip. In a release the candidate's window starts at its first traffic, and the
    shipped gates are what bench/detection.py and the release tests measure."""
    port = service.server_address[1]
    gate_set = parse_gate_set(
        {
            "profile": "http",
            "gates": [
                {
                    "name": "abort",
                    "metric": "error_ratio",
                    "threshold": 0.05,
                    "window": "2s",
                    "interval": "100ms",
                    "min_requests": 100,
                    "guard": True,
                }
            ],
        }
    )
    with (
        prometheus(targets={"shop": f"127.0.0.1:{port}"}, scrape_interval="1s") as prom,
        LoadGenerator(f"http://127.0.0.1:{port}/", rps=200, duration=60),
    ):
        wait_for_target_up(prom, "shop")
        provider = PrometheusProvider(prom.url)
        evaluator = GateEvaluator(gate_set, provider)  # checks the window against the scrape
        release = Release(
            candidate=Subject("shop", "v2"), started=datetime.now(UTC) - timedelta(minutes=1)
        )
        live = LiveGates(evaluator, release)

        # Given a healthy service whose verdict is pass
        deadline = time.monotonic() + 20
        passes = 0
        while passes < 5 and time.monotonic() < deadline:
            if any(r.verdict is Verdict.PASS for r in live.tick()):
                passes += 1
            time.sleep(0.1)
        assert passes == 5, live.latest

        # When it flips to 8% errors
        service.behaviour = Behaviour(error_rate=0.08, latency_ms=2, latency_jitter_ms=1)
        flipped = time.monotonic()

        # Then the live loop reports fail within three scrape intervals
        failed_after = None
        while time.monotonic() - flipped < 15:
            results = live.tick()
            if any(r.verdict is Verdict.FAIL for r in results):
                failed_after = time.monotonic() - flipped
                break
            time.sleep(0.05)
        provider.close()
    assert failed_after is not None, live.latest
    print(f"live gate: fail {failed_after:.2f}s after the flip (scrape {SCRAPE_S:g}s)")
    assert failed_after <= 3 * SCRAPE_S, f"fail after {failed_after:.2f}s"
    assert live.latest["abort"].reason.startswith("abort: error ratio")
