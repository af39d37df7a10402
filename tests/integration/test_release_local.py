"""Whole releases on the local target, judged by a real Prometheus scraping every second."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.engine.demo import service_command
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions, run_release
from gatekeeper.store.factory import open_store
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.state import STATE_FILE, load_state
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.support.prom import free_port, prometheus

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    prometheus_url: str
    router_port: int
    state_dir: Path
    db_url: str
    load: LoadGenerator

    def release(
        self,
        version: str,
        stable: str,
        strategy: dict[str, Any],
        *flags: str,
        scraper: bool = False,
        metrics_timeout_s: float = 60.0,
        **extra: Any,
    ) -> Outcome:
        spec = parse_release(
            {
                "app": "shop",
                "environment": "test",
                "version": version,
                "command": service_command(version, "--latency-ms", "5", *flags),
                "stable": {
                    "version": stable,
                    "command": service_command(stable, "--latency-ms", "5"),
                },
                "strategy": strategy,
                "target": {
                    "type": "local",
                    "router_port": self.router_port,
                    "state_dir": str(self.state_dir),
                },
                "time_scale": 30,
                "hold_timeout": "60m",
                **extra,
            }
        )
        return run_release(
            spec,
            RunOptions(
                prometheus_url=None if scraper else self.prometheus_url,
                db_url=self.db_url,
                state_dir=self.state_dir,
                metrics_timeout_s=metrics_timeout_s,
            ),
        )

    def target(self) -> LocalProcessTarget:
        return LocalProcessTarget("shop", self.state_dir, router_port=self.router_port)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    base = tmp_path
    state_dir = base / "target"
    state_dir.mkdir()
    router_port = free_port()
    with prometheus(scrape_interval="1s", file_sd=state_dir / "file_sd.json") as prom:
        load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=200, duration=170)
        load.start()
        s = Stack(prom.url, router_port, state_dir, f"sqlite:///{base / 'gk.db'}", load)
        try:
            yield s
        finally:
            load.stop()
            s.target().shutdown()


CANARY = {"type": "canary", "steps": [25, 50, 100], "analysis": "5m"}
ROLLING = {"type": "rolling", "batches": [25, 50, 100], "analysis": "5m"}
BLUE_GREEN = {"type": "blue-green", "bake": "5m", "scale_down_delay": "30s"}


@pytest.mark.parametrize("strategy", [CANARY, ROLLING, BLUE_GREEN], ids=lambda s: s["type"])
def test_a_good_version_is_promoted(stack: Stack, strategy: dict[str, Any]):
    out = stack.release("v2", "v1", strategy)
    assert out.phase is Phase.PROMOTED, out.reason
    state = stack.target().state()
    assert state.stable_version == "v2"
    assert state.candidate_weight == 0


def test_eight_percent_errors_roll_back_and_all_traffic_returns_to_stable(stack: Stack):
    out = stack.release("v2", "v1", CANARY, "--error-rate", "0.08")
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith("abort: error ratio")
    state = stack.target().state()
    assert state.stable_version == "v1"
    assert state.candidate_weight == 0
    assert state.candidate_version is None
    # Then every request is answered by stable.
    stack.load.reset()
    time.sleep(1.5)
    stats = stack.load.stats()
    assert stats.answered > 50
    assert set(stats.by_backend) == {"stable"}, stats.by_backend


# Half the traffic from the first step: at 30x compression the 2m abort window is 4s, and
# 400 requests in it (not 200 at 25%) keep a 3% candidate's noise from crossing the
# abort gate's significance boundary (about 1 in 100,000 windows instead of 1 in 1,000).
CANARY_HALF = {"type": "canary", "steps": [50, 100], "analysis": "5m"}


def test_three_percent_holds_then_rolls_back_once_sustained(stack: Stack):
    out = stack.release("v2", "v1", CANARY_HALF, "--error-rate", "0.03")
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith("sustained:"), out.reason
    store = open_store(stack.db_url)
    try:
        phases = [e.message for e in store.events(out.release_id) if e.kind == "phase"]
    finally:
        store.close()
    assert any(p.startswith("holding:") for p in phases), phases


@pytest.mark.parametrize("source", ["prometheus", "scraper"])
def test_a_service_whose_series_appear_at_its_first_request_is_released(stack: Stack, source: str):
    """Client libraries export no labelled counter before its first request, and the
    candidate gets none before the first shift: "seen" is a successful scrape."""
    out = stack.release("v2", "v1", CANARY, "--lazy-metrics", scraper=source == "scraper")
    assert out.phase is Phase.PROMOTED, out.reason
    assert stack.target().state().stable_version == "v2"


@pytest.mark.parametrize("source", ["prometheus", "scraper"])
def test_a_candidate_whose_metrics_cannot_be_scraped_is_rolled_back_before_any_traffic(
    stack: Stack, source: str
):
    out = stack.release(
        "v2", "v1", CANARY, "--no-metrics", scraper=source == "scraper", metrics_timeout_s=5
    )
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith(
        f"deploy: {source} has not seen default/shop@v2's metrics (127.0.0.1:"
    )
    assert out.reason.endswith(
        "(limit 5s); without them no gate can judge it: is its /metrics scraped?"
    )
    store = open_store(stack.db_url)
    try:
        shifts = [e.message for e in store.events(out.release_id) if e.kind == "shift"]
    finally:
        store.close()
    assert shifts == []


def test_a_candidate_killed_mid_release_is_rolled_back_on_its_exit_not_on_missing_metrics(
    stack: Stack,
):
    """A dead candidate gives its share of users errors from the router that its own
    metrics never count; the process supervisor's signal rolls it back."""
    killed: list[int] = []

    def kill_once_it_has_traffic() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = load_state(stack.state_dir / STATE_FILE)
            if state is not None and state.candidate is not None and state.weight > 0:
                os.kill(state.candidate.pid, signal.SIGKILL)
                killed.append(state.candidate.pid)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_once_it_has_traffic, daemon=True)
    killer.start()
    out = stack.release("v2", "v1", CANARY)
    killer.join(5)
    assert killed, "the candidate never got traffic"
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith(f"p0: candidate shop v2: process {killed[0]} on 127.0.0.1:")
    assert "is not running" in out.reason
    state = stack.target().state()
    assert (state.stable_version, state.candidate_version, state.candidate_weight) == (
        "v1",
        None,
        0,
    )
