"""Whole releases on the local target with the built-in gates, judged by a real Prometheus:
candidates that leak memory, burn CPU per request, turn away a fifth of their requests
unseen or fill their database pool are each rolled back by the gate that watches it; a
healthy one is promoted with every resource gate judging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.engine.demo import service_command
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions, run_release
from gatekeeper.store.factory import open_store
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.support.prom import free_port, prometheus

pytestmark = pytest.mark.integration

CANARY = {"type": "canary", "steps": [25, 50, 100], "analysis": "5m"}
# A stand-in database: ten connections, each request holds one for 5 ms (healthy).
POOL = ("--db-pool-size", "10", "--db-hold-ms", "5")


@dataclass
class Stack:
    prometheus_url: str
    router_port: int
    state_dir: Path
    db_url: str

    def release(
        self,
        candidate_flags: tuple[str, ...] = (),
        *,
        stable_flags: tuple[str, ...] = (),
        time_scale: float = 30,
    ) -> Outcome:
        spec = parse_release(
            {
                "app": "shop",
                "environment": "test",
                "version": "v2",
                "command": service_command("v2", "--latency-ms", "5", *candidate_flags),
                "stable": {
                    "version": "v1",
                    "command": service_command("v1", "--latency-ms", "5", *stable_flags),
                },
                "strategy": CANARY,
                "target": {
                    "type": "local",
                    "router_port": self.router_port,
                    "state_dir": str(self.state_dir),
                },
                "time_scale": time_scale,
                "hold_timeout": "60m",
            }
        )
        return run_release(
            spec,
            RunOptions(
                prometheus_url=self.prometheus_url, db_url=self.db_url, state_dir=self.state_dir
            ),
        )

    def gate_results(self, release_id: str) -> list[GateResult]:
        store = open_store(self.db_url)
        try:
            return store.gate_results(release_id, limit=100_000)
        finally:
            store.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    state_dir = tmp_path / "target"
    state_dir.mkdir()
    router_port = free_port()
    with prometheus(scrape_interval="1s", file_sd=state_dir / "file_sd.json") as prom:
        load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=200, duration=300)
        load.start()
        s = Stack(prom.url, router_port, state_dir, f"sqlite:///{tmp_path / 'gk.db'}")
        try:
            yield s
        finally:
            load.stop()
            LocalProcessTarget("shop", state_dir, router_port=router_port).shutdown()


def _story(results: list[GateResult], gates: tuple[str, ...]) -> str:
    return "\n".join(r.reason for r in results if r.gate in gates)


def test_a_healthy_candidate_is_promoted_with_every_resource_gate_judging(stack: Stack) -> None:
    out = stack.release(POOL, stable_flags=POOL)
    results = stack.gate_results(out.release_id)
    gates = ("traffic", "cpu", "memory", "db-pool")
    assert out.phase is Phase.PROMOTED, f"{out.reason}\n{_story(results, gates)}"
    passed = {r.gate for r in results if r.verdict is Verdict.PASS}

    assert set(gates) <= passed, _story(results, gates)


@pytest.mark.parametrize(
    ("flags", "time_scale", "gate", "words"),
    [
        pytest.param(
            ("--leak-kb-per-request", "64"),
            30,
            "memory",
            "memory: candidate resident memory ",
            id="leaks-64KiB-a-request",
        ),
        pytest.param(
            ("--cpu-ms-per-request", "5"),
            30,
            "cpu",
            "cpu: candidate CPU per request ",
            id="burns-5ms-of-CPU-a-request",
        ),
        # 20% of its requests closed unseen: at 25% the candidate counts 21% of them. At
        # 10x the 5m traffic window is 30s, about 5,700 requests: enough to tell it from
        # 23%, the bottom of the tolerance, at 99%.
        pytest.param(
            ("--drop-share", "0.2"),
            10,
            "traffic",
            "traffic: candidate took ",
            id="closes-20pct-of-connections-uncounted",
        ),
        pytest.param(
            ("--db-pool-size", "10", "--db-hold-ms", "180"),
            30,
            "db-pool",
            "db-pool: pool 'demo' of 127.0.0.1:",
            id="holds-its-pool-90pct-full",
        ),
    ],
)
def test_a_bad_candidate_is_rolled_back_by_the_gate_that_watches_it(
    stack: Stack, flags: tuple[str, ...], time_scale: float, gate: str, words: str
) -> None:
    out = stack.release(
        flags, stable_flags=POOL if gate == "db-pool" else (), time_scale=time_scale
    )
    results = stack.gate_results(out.release_id)
    print(f"{gate}: {out.phase.value}: {out.reason}")  # shown with -s
    assert out.phase is Phase.ROLLED_BACK, f"{out.reason}\n{_story(results, (gate,))}"
    assert out.reason.startswith(words), f"{out.reason}\n{_story(results, (gate,))}"
    state = LocalProcessTarget("shop", stack.state_dir, router_port=stack.router_port).state()
    assert (state.stable_version, state.candidate_weight) == ("v1", 0)
    if gate == "traffic":
        assert "below its weight" in out.reason, out.reason
