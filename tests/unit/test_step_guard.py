"""`gatekeeper step run RELEASE guard`: the abort guard beside the steps, until the release ends.

Fakes at our own wrappers (clock, provider, target); the store is a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.domain.errors import TemporaryError
from gatekeeper.domain.exits import Exit
from gatekeeper.domain.plan import DeployCandidate, Plan, Promote, ShiftTraffic
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.engine.executor import new_record
from gatekeeper.engine.judge import Judge
from gatekeeper.engine.listener import QuietListener
from gatekeeper.engine.records import Recorder
from gatekeeper.engine.runner import RunOptions
from gatekeeper.engine.single_step import GUARD, StepResult, guard_release, run_one_step
from gatekeeper.engine.steps import StepContext
from gatekeeper.store.sql import SqlStore
from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.routers.local import LocalRouter
from gates.evaluate import GateEvaluator, Release
from gates.live import LiveGates
from gates.provider import Counts, Subject
from gates.spec import GateSet, default_gates
from tests.support.fakes import T0, FakeClock, FakeProvider, FakeTarget

RPS = 50.0
LIMIT = timedelta(hours=1)  # a guard that neither fails nor ends by then is a test failure


def spec() -> ReleaseSpec:
    return parse_release(
        {
            "app": "shop",
            "environment": "staging",
            "version": "v2",
            "command": "svc --port {port}",
            "stable": {"version": "v1", "command": "svc --port {port}"},
            "strategy": {"type": "canary"},
        }
    )


def traffic(error_ratio: float) -> Callable[[Subject, datetime, datetime], Counts | None]:
    def fn(subject: Subject, start: datetime, end: datetime) -> Counts | None:
        n = RPS * max(0.0, (end - max(start, T0)).total_seconds())
        ratio = error_ratio if subject.version == "v2" else 0.0
        return Counts(requests=n, errors=n * ratio)

    return fn


class Clock(FakeClock):
    """Fake time; ``at`` runs an action once fake time passes its moment (another process
    acting on the release meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[tuple[datetime, Callable[[], None]]] = []

    def at(self, after: timedelta, action: Callable[[], None]) -> None:
        self.actions.append((T0 + after, action))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        assert self.t - T0 < LIMIT, "the guard neither failed nor ended"
        due = [a for a in self.actions if a[0] <= self.t]
        self.actions = [a for a in self.actions if a[0] > self.t]
        for _, action in due:
            action()


class Bed:
    """A release running elsewhere: deployed, 25% of traffic on the candidate, phase running."""

    def __init__(self, tmp: Path, error_ratio: float = 0.001) -> None:
        self.spec = spec()
        self.plan = Plan(
            release=self.spec.release_id,
            strategy="canary",
            steps=(
                DeployCandidate(name="deploy"),
                ShiftTraffic(name="shift-25", weight=25),
                Promote(name="promote"),
            ),
        )
        self.db_url = f"sqlite:///{tmp / 'gk.db'}"
        self.store = SqlStore.open(self.db_url)
        self.clock = Clock()
        self.target = FakeTarget()
        self.target.ensure_stable(VersionRun(version="v1", command="svc"))
        self.target.deploy_candidate(VersionRun(version="v2", command="svc"), 100)
        self.target.set_weight(25)
        self.provider = FakeProvider(traffic(error_ratio))
        self.store.create_release(new_record(self.spec, self.plan, self.clock.now()))
        self.store.set_phase(self.spec.release_id, Phase.RUNNING, "running shift-25")

    def context(self, router: LocalRouter | None = None) -> StepContext:
        evaluator = GateEvaluator(GateSet(gates=default_gates().gates[:3]), self.provider)
        release = Release(
            candidate=Subject("shop", "v2", "default"),
            baseline=Subject("shop", "v1", "default"),
            started=T0,
        )
        gates = LiveGates(evaluator, release, clock=self.clock)
        recorder = Recorder(self.spec.release_id, self.store, self.clock, QuietListener())
        judge = Judge(
            self.spec,
            gates,
            self.store,
            recorder,
            self.clock,
            health=lambda: self.target.health("v2"),
        )
        return StepContext(
            spec=self.spec,
            workloads=self.target,
            router=router or LocalRouter(self.target),
            judge=judge,
            recorder=recorder,
            clock=self.clock,
        )

    def guard(self, router: LocalRouter | None = None) -> StepResult:
        return guard_release(self.store, self.context(router), self.plan)

    def phase(self) -> Phase:
        record = self.store.get_release(self.spec.release_id)
        assert record is not None
        return record.phase


@pytest.fixture
def bed(tmp_path: Path):
    b = Bed(tmp_path)
    yield b
    b.store.close()


def test_a_bad_gate_fails_the_guard_which_rolls_back_at_once(tmp_path: Path) -> None:
    b = Bed(tmp_path, error_ratio=0.08)
    try:
        result = b.guard()
        assert result.code is Exit.ROLLED_BACK, result.message
        assert result.message.startswith("guard: abort: error ratio 8% > 5%"), result.message
        assert b.phase() is Phase.ROLLED_BACK
        events = [e.message for e in b.store.events(b.spec.release_id) if e.kind == "rollback"]
        assert events and events[0].startswith("rolling back: abort:"), events
        # the guard acts at once, not after a step: within the abort gate's window
        assert b.clock.t - T0 <= timedelta(minutes=2)
        # and it moved traffic back to stable itself, before its exit (the exit handler's
        # rollback finds it done)
        assert b.target.state().candidate_weight == 0
    finally:
        b.store.close()


def test_the_guard_ends_with_0_when_the_release_is_promoted_meanwhile(bed: Bed) -> None:
    def promote() -> None:
        bed.store.set_phase(bed.spec.release_id, Phase.PROMOTED, "shop v2 promoted")

    bed.clock.at(timedelta(minutes=5), promote)
    result = bed.guard()
    assert result.code is Exit.DONE, result.message
    assert "is promoted (shop v2 promoted); nothing left to guard" in result.message
    # it watched the whole time: its abort gate judged, and within a second of the promotion
    # it had ended
    assert bed.store.gate_results(bed.spec.release_id)
    assert timedelta(minutes=5) <= bed.clock.t - T0 <= timedelta(minutes=5, seconds=1)
    assert bed.phase() is Phase.PROMOTED


@pytest.mark.parametrize(
    "phase", [Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED], ids=lambda p: p.value
)
def test_the_guard_ends_with_0_when_the_release_is_ended_by_someone_else(
    bed: Bed, phase: Phase
) -> None:
    bed.clock.at(
        timedelta(seconds=30), lambda: bed.store.set_phase(bed.spec.release_id, phase, "x")
    )
    result = bed.guard()
    assert result.code is Exit.DONE, result.message
    assert f"is {phase.value} (x)" in result.message
    assert bed.phase() is phase


def test_a_crash_looping_candidate_fails_the_guard_on_the_p0_signal(bed: Bed) -> None:
    bed.target.problems["v2"] = ("candidate shop v2: restarted 3 times",)
    result = bed.guard()
    assert result.code is Exit.ROLLED_BACK, result.message
    assert result.message == "guard: p0: candidate shop v2: restarted 3 times"
    assert bed.phase() is Phase.ROLLED_BACK
    assert bed.target.state().candidate_weight == 0


class FlakyRouter(LocalRouter):
    def weight(self) -> int:
        raise TemporaryError("router local: the admin API did not answer")


def test_a_temporary_error_exits_75_and_decides_nothing(bed: Bed) -> None:
    result = bed.guard(FlakyRouter(bed.target))
    assert result.code is Exit.TEMPORARY, result.message
    assert "the admin API did not answer" in result.message
    assert bed.phase() is Phase.RUNNING


def test_step_run_guard_of_an_ended_release_is_done_without_touching_anything(bed: Bed) -> None:
    bed.store.set_phase(bed.spec.release_id, Phase.PROMOTED, "shop v2 promoted")
    result = run_one_step(bed.spec.release_id, GUARD, RunOptions(db_url=bed.db_url))
    assert result.code is Exit.DONE
    assert "nothing left to guard" in result.message
