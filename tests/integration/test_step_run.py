"""`gatekeeper step run`: each step kind alone, twice, and after a crash mid-step, on the local
target with real processes, judged by a real Prometheus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.engine.demo import service_command
from gatekeeper.engine.runner import submit_or_resume, validate
from gatekeeper.store.base import Approval
from gatekeeper.store.factory import open_store
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.support.fakes import T0
from tests.support.prom import free_port, prometheus

pytestmark = pytest.mark.integration


@dataclass
class Bed:
    prometheus_url: str
    router_port: int
    state_dir: Path
    db_url: str
    home: Path

    def submit(self, strategy: dict[str, Any], *flags: str, **extra: Any) -> tuple[str, Plan]:
        spec = parse_release(
            {
                "app": "shop",
                "environment": "test",
                "version": "v2",
                "command": service_command("v2", "--latency-ms", "5", *flags),
                "stable": {
                    "version": "v1",
                    "command": service_command("v1", "--latency-ms", "5"),
                },
                "strategy": strategy,
                "target": {
                    "type": "local",
                    "router_port": self.router_port,
                    "state_dir": str(self.state_dir),
                },
                "time_scale": 20,
                "hold_timeout": "60m",
                **extra,
            }
        )
        plan, _ = validate(spec)
        store = open_store(self.db_url)
        try:
            submit_or_resume(store, spec, plan)
        finally:
            store.close()
        return spec.release_id, plan

    def step(self, release: str, step: str | int, timeout: float = 120) -> tuple[int, str]:
        proc = subprocess.run(
            self._argv(release, step),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(),
        )
        return proc.returncode, proc.stdout + proc.stderr

    def start_step(self, release: str, step: str | int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self._argv(release, step),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env(),
        )

    def _argv(self, release: str, step: str | int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gatekeeper.cli",
            "step",
            "run",
            release,
            str(step),
            "--prometheus",
            self.prometheus_url,
            "--db",
            self.db_url,
        ]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GATEKEEPER_HOME": str(self.home)}

    def record(self, release: str) -> Any:
        store = open_store(self.db_url)
        try:
            return store.get_release(release)
        finally:
            store.close()

    def approve(self, release: str, step: str) -> None:
        store = open_store(self.db_url)
        try:
            store.add_approval(Approval(release, step, "rm", "release-manager", T0))
        finally:
            store.close()

    def target(self) -> LocalProcessTarget:
        return LocalProcessTarget("shop", self.state_dir, router_port=self.router_port)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    state_dir = tmp_path / "target"
    state_dir.mkdir()
    router_port = free_port()
    with prometheus(scrape_interval="1s", file_sd=state_dir / "file_sd.json") as prom:
        load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=150, duration=300)
        load.start()
        b = Bed(prom.url, router_port, state_dir, f"sqlite:///{tmp_path / 'gk.db'}", tmp_path)
        try:
            yield b
        finally:
            load.stop()
            b.target().shutdown()


CANARY = {"type": "canary", "steps": [50, 100], "analysis": "1m"}
ROLLING = {"type": "rolling", "batches": [50, 100], "analysis": "1m"}


def _weight(bed: Bed) -> int:
    target = bed.target()
    try:
        return target.state().candidate_weight
    finally:
        target.close()


@pytest.mark.parametrize(
    ("strategy", "approvals"), [(CANARY, ["promote"]), (ROLLING, [])], ids=["canary", "rolling"]
)
def test_every_step_alone_then_again_is_a_no_op(
    bed: Bed, strategy: dict[str, Any], approvals: list[str]
) -> None:
    release, plan = bed.submit(strategy, approvals=approvals)
    for index, step in enumerate(plan.steps):
        if step.kind == "approval":
            bed.approve(release, step.name)
        code, out = bed.step(release, index)
        assert code == 0, (step.name, out)
        record = bed.record(release)
        assert record.next_step == index + 1, (step.name, out)
        weight = _weight(bed)
        code, again = bed.step(release, index)
        assert code == 0, (step.name, again)
        assert f"{index} ({step.name}) is done already" in again, again
        assert _weight(bed) == weight  # the second run changed nothing
        if step.kind in ("shift", "batch"):
            assert weight == getattr(step, "weight", getattr(step, "percent", None))
    record = bed.record(release)
    assert record.phase is Phase.PROMOTED, record.reason
    target = bed.target()
    try:
        state = target.state()
    finally:
        target.close()
    assert (state.stable_version, state.candidate_version) == ("v2", None)


def test_a_step_out_of_order_is_refused_and_touches_nothing(bed: Bed) -> None:
    release, plan = bed.submit(CANARY)
    code, out = bed.step(release, 2)
    assert code == 2, out
    assert "comes after 0 (deploy), which is not done yet" in out
    assert bed.record(release).phase is Phase.PENDING
    code, out = bed.step(release, 99)
    assert code == 2 and "step index 99 is out of range" in out, out


def test_a_step_killed_mid_way_finishes_when_run_again(bed: Bed) -> None:
    release, plan = bed.submit(CANARY)
    names = [s.name for s in plan.steps]
    for index in range(names.index("analyze-50")):
        code, out = bed.step(release, index)
        assert code == 0, out
    analyze = names.index("analyze-50")
    proc = bed.start_step(release, analyze)
    time.sleep(2.5)  # inside the analysis (3s scaled) and its holds
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert bed.record(release).next_step == analyze  # not done
    assert _weight(bed) == 50
    code, out = bed.step(release, analyze)
    assert code == 0, out
    assert bed.record(release).next_step == analyze + 1


def test_a_failing_gate_exits_3_with_traffic_back_on_stable_and_the_rollback_step_is_a_no_op(
    bed: Bed,
) -> None:
    release, plan = bed.submit(CANARY, "--error-rate", "0.3")
    names = [s.name for s in plan.steps]
    for index in range(names.index("analyze-50")):
        code, out = bed.step(release, index)
        assert code == 0, out
    code, out = bed.step(release, names.index("analyze-50"))
    assert code == 3, out
    assert "abort: error ratio" in out
    # the step that saw the gate fail rolled back at once, not after the exit handler started
    record = bed.record(release)
    assert record.phase is Phase.ROLLED_BACK and record.reason.startswith("abort: error ratio")
    assert _weight(bed) == 0
    # the exit handler's rollback finds it done (its steps are idempotent), again and again
    for _ in range(2):
        code, out = bed.step(release, "rollback")
        assert code == 0 and "rolled_back: abort: error ratio" in out, out
        assert bed.record(release).phase is Phase.ROLLED_BACK and _weight(bed) == 0
    code, out = bed.step(release, names.index("shift-100"))
    assert code == 3 and "will not run" in out, out
    assert _weight(bed) == 0
