"""The local executor: step order, the guard, holds, approvals, crash and resume."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.domain.errors import TemporaryError
from gatekeeper.domain.plan import (
    Analyze,
    DeployCandidate,
    Plan,
    Promote,
    ShiftTraffic,
    WaitForApproval,
)
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.domain.verdicts import Verdict
from gatekeeper.engine.executor import Hooks, LocalExecutor, new_record
from gatekeeper.store.base import Approval
from gatekeeper.store.sql import SqlStore
from gatekeeper.targets.base import Health, VersionRun
from gates.evaluate import GateEvaluator, Release
from gates.live import LiveGates
from gates.provider import Counts, Subject
from gates.spec import GateSet, default_gates
from tests.support.fakes import T0, FakeClock, FakeProvider, FakeTarget

RPS = 50.0


def spec(**extra: object) -> ReleaseSpec:
    data: dict[str, object] = {
        "app": "shop",
        "environment": "staging",
        "version": "v2",
        "command": "svc --port {port}",
        "stable": {"version": "v1", "command": "svc --port {port}"},
        "strategy": {"type": "canary"},
        "hold_timeout": "20m",
    }
    data.update(extra)
    return parse_release(data)


def canary_plan(s: ReleaseSpec) -> Plan:
    return Plan(
        release=s.release_id,
        strategy="canary",
        steps=(
            DeployCandidate(name="deploy"),
            ShiftTraffic(name="shift-25", weight=25),
            Analyze(name="analyze-25", duration=300),
            ShiftTraffic(name="shift-100", weight=100),
            Analyze(name="analyze-100", duration=300),
            Promote(name="promote"),
        ),
    )


def traffic(error_ratio: float | Callable[[datetime], float], rps: float = RPS):
    def fn(subject: Subject, start: datetime, end: datetime) -> Counts | None:
        if subject.version != "v2":
            return Counts(requests=rps * (end - start).total_seconds(), errors=0.0)
        ratio = error_ratio(end) if callable(error_ratio) else error_ratio
        n = rps * max(0.0, (end - max(start, T0)).total_seconds())
        return Counts(requests=n, errors=n * ratio)

    return fn


class Harness:
    def __init__(self, tmp: Path, s: ReleaseSpec, plan: Plan, provider: FakeProvider) -> None:
        self.spec, self.plan, self.provider = s, plan, provider
        self.store = SqlStore.open(f"sqlite:///{tmp / 'gk.db'}")
        self.target = FakeTarget()
        self.clock = FakeClock()
        self.store.create_release(new_record(s, plan, self.clock.now()))

    def executor(self, hooks: Hooks | None = None) -> LocalExecutor:
        # The error and latency rules: the fake's traffic does not follow the weights, which
        # the traffic gate would catch (tests/unit/test_resource_gates.py covers it).
        evaluator = GateEvaluator(GateSet(gates=default_gates().gates[:3]), self.provider)
        release = Release(
            candidate=Subject(self.spec.app, self.spec.version, "default"),
            baseline=Subject(self.spec.app, self.spec.stable.version, "default"),
            started=T0,
        )
        gates = LiveGates(evaluator, release, clock=self.clock)
        return LocalExecutor(
            spec=self.spec,
            plan=self.plan,
            store=self.store,
            target=self.target,
            gates=gates,
            clock=self.clock,
            hooks=hooks,
        )


@pytest.fixture
def make(tmp_path: Path):
    def build(error_ratio=0.001, plan: Plan | None = None, rps: float = RPS, **extra):
        s = spec(**extra)
        return Harness(tmp_path, s, plan or canary_plan(s), FakeProvider(traffic(error_ratio, rps)))

    return build


def test_good_candidate_is_promoted_after_every_step_in_order(make):
    h = make()
    out = h.executor().run()
    assert out.phase is Phase.PROMOTED, out.reason
    assert h.target.weights == [25, 100]
    kinds = [c[0] for c in h.target.calls]
    assert kinds == ["ensure_stable", "deploy", "weight", "weight", "promote"]
    events = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "step-completed"]
    assert events == [s.name for s in h.plan.steps]


def test_eight_percent_errors_roll_back_with_the_abort_reason(make):
    h = make(error_ratio=0.08)
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK
    assert out.reason.startswith("abort: error ratio 8% > 5%")
    assert h.target.state().candidate_weight == 0
    assert h.target.state().candidate_version is None
    assert ("promote", 0.0) not in h.target.calls


def test_the_guard_acts_between_steps_without_an_analysis(make):
    s = spec()
    plan = Plan(
        release=s.release_id,
        strategy="canary",
        steps=(
            DeployCandidate(name="deploy"),
            ShiftTraffic(name="shift-50", weight=50),
            ShiftTraffic(name="shift-100", weight=100),
            Promote(name="promote"),
        ),
    )
    h = make(error_ratio=0.2, plan=plan)
    h.clock.sleep(30)  # the candidate has had traffic for a while
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK
    assert 100 not in h.target.weights


def test_three_percent_holds_then_rolls_back_once_sustained(make):
    h = make(error_ratio=0.03)
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK
    assert out.reason.startswith("sustained:")
    phases = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "phase"]
    assert any(p.startswith("holding:") for p in phases)
    elapsed = (h.clock.now() - T0).total_seconds()
    assert 900 <= elapsed <= 1800, elapsed


def test_no_traffic_holds_and_stops_at_the_hold_timeout(make):
    h = make(rps=0.0)
    out = h.executor().run()
    assert out.phase is Phase.ABORTED
    assert "hold_timeout 20m" in out.reason
    assert h.target.state().candidate_weight == 0


def _approval_plan(s: ReleaseSpec) -> Plan:
    return Plan(
        release=s.release_id,
        strategy="canary",
        steps=(
            DeployCandidate(name="deploy"),
            WaitForApproval(name="approve-promote", roles=("release-manager",)),
            ShiftTraffic(name="shift-100", weight=100),
            Promote(name="promote"),
        ),
    )


def test_approval_step_waits_for_the_right_role(make):
    s = spec()
    h = make(plan=_approval_plan(s))
    h.store.add_approval(Approval(s.release_id, "approve-promote", "dev", "developer", T0))
    out = h.executor().run()
    assert out.phase is Phase.ABORTED  # a developer's approval does not count
    h2 = make(plan=_approval_plan(s), environment="prod")
    h2.store.add_approval(
        Approval(h2.spec.release_id, "approve-promote", "rm", "release-manager", T0)
    )
    assert h2.executor().run().phase is Phase.PROMOTED


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


class CrashAt(Hooks):
    def __init__(self, index: int, where: str) -> None:
        self.index, self.where = index, where

    def before_complete(self, index: int) -> None:
        if self.where == "before" and index == self.index:
            raise Crash

    def after_complete(self, index: int) -> None:
        if self.where == "after" and index == self.index:
            raise Crash


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("index", range(6))
def test_crash_at_every_step_boundary_then_resume_never_repeats_a_shift(
    tmp_path: Path, index: int, where: str
):
    s = spec()
    h = Harness(tmp_path, s, canary_plan(s), FakeProvider(traffic(0.001)))
    with pytest.raises(Crash):
        h.executor(CrashAt(index, where)).run()
    record = h.store.get_release(s.release_id)
    assert record is not None and not record.phase.final
    out = h.executor().run()
    assert out.phase is Phase.PROMOTED, out.reason
    assert h.target.weights == [25, 100]
    assert [c for c in h.target.calls if c[0] == "weight"] == [("weight", 25), ("weight", 100)]
    assert [c[0] for c in h.target.calls].count("deploy") == 1
    assert [c[0] for c in h.target.calls].count("promote") == 1
    final = h.store.get_release(s.release_id)
    assert final is not None and final.next_step == len(h.plan.steps)


def test_gate_results_are_recorded_on_change_and_every_ten_seconds_not_every_tick(make):
    h = make()
    assert h.executor().run().phase is Phase.PROMOTED
    elapsed = (h.clock.now() - T0).total_seconds()
    rows = [r for r in h.store.gate_results(h.spec.release_id, limit=100_000) if r.gate == "abort"]
    ticks = elapsed / 0.25
    assert len(rows) <= elapsed / 10 + 10, (len(rows), elapsed)
    assert len(rows) < ticks / 10
    verdicts = [r.verdict for r in rows]
    assert Verdict.PASS in verdicts  # the record still shows what the gate said


class ApproveLater(FakeClock):
    """A clock under which a person approves once ``after`` seconds have passed."""

    def __init__(self, store, release_id: str, step: str, after: float) -> None:
        super().__init__()
        self.store, self.release_id, self.step, self.after = store, release_id, step, after
        self.done = False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.done and (self.t - T0).total_seconds() >= self.after:
            self.store.add_approval(Approval(self.release_id, self.step, "cto", "cto", self.t))
            self.done = True


def test_a_long_wait_for_approval_before_any_traffic_never_fails_closed(make):
    s = spec(expedited=True, expedited_reason="INC-1", hold_timeout="2h")
    plan = Plan(
        release=s.release_id,
        strategy="canary",
        expedited=True,
        steps=(
            WaitForApproval(name="approve-expedited", roles=("engineering-lead", "cto")),
            DeployCandidate(name="deploy"),
            ShiftTraffic(name="shift-100", weight=100),
            Analyze(name="analyze-100", duration=120),
            Promote(name="promote"),
        ),
    )
    h = make(plan=plan, expedited=True, expedited_reason="INC-1", hold_timeout="2h")
    h.clock = ApproveLater(h.store, h.spec.release_id, "approve-expedited", after=35 * 60)
    out = h.executor().run()
    assert out.phase is Phase.PROMOTED, out.reason  # 35 min of "no data" before traffic is fine


class FlakyStore:
    """The real store, until it breaks: every write fails from then on."""

    def __init__(self, inner) -> None:
        self.inner, self.broken = inner, False

    def __getattr__(self, name: str):
        attr = getattr(self.inner, name)
        writes = ("record_event", "set_phase", "record_gate_results", "save_target_state")
        if name in writes:

            def guarded(*args, **kwargs):
                if self.broken:
                    raise RuntimeError("database is unreachable")
                return attr(*args, **kwargs)

            return guarded
        return attr


def test_a_store_outage_never_keeps_traffic_on_a_failing_candidate(make):
    h = make(error_ratio=0.08)
    store = FlakyStore(h.store)
    h.store = store
    original = h.target.set_weight

    def shift_then_break(weight: int) -> None:
        original(weight)
        store.broken = True  # the database goes away right after traffic moved

    h.target.set_weight = shift_then_break
    out = h.executor().run()
    assert h.target.state().candidate_weight == 0
    assert ("rollback", None) in h.target.calls
    assert out.phase in (Phase.ROLLED_BACK, Phase.FAILED)


def test_a_release_killed_while_rolling_back_finishes_the_rollback_on_resume(make):
    h = make()
    h.target.ensure_stable(VersionRun("v1"))
    h.target.deploy_candidate(VersionRun("v2"), 100)
    h.target.set_weight(25)
    h.store.set_phase(h.spec.release_id, Phase.ROLLING_BACK, "abort: error ratio 9% > 5%")
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK
    assert out.reason == "abort: error ratio 9% > 5%"
    assert h.target.state().candidate_weight == 0
    assert not any(c[0] == "weight" and c[1] == 100 for c in h.target.calls)


def test_a_temporary_target_error_in_rollback_is_retried(make):
    h = make(error_ratio=0.08)
    original = h.target.rollback
    failures = [TemporaryError("router admin API did not answer")] * 2

    def flaky_rollback() -> None:
        if failures:
            raise failures.pop()
        original()

    h.target.rollback = flaky_rollback
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert h.target.state().candidate_weight == 0


class AbortLater(FakeClock):
    """A clock under which a person runs `gatekeeper abort` after ``after`` seconds."""

    def __init__(self, store, release_id: str, after: float) -> None:
        super().__init__()
        self.store, self.release_id, self.after = store, release_id, after

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        record = self.store.get_release(self.release_id)
        if (self.t - T0).total_seconds() >= self.after and not record.phase.final:
            self.store.set_phase(self.release_id, Phase.ABORTED, "aborted by rm: bad timing")


def test_an_abort_from_another_process_stops_the_run_and_returns_traffic(make):
    h = make()
    h.clock = AbortLater(h.store, h.spec.release_id, after=100)
    out = h.executor().run()
    assert out.phase is Phase.ABORTED
    assert out.reason == "aborted by rm: bad timing"
    assert h.target.state().candidate_weight == 0
    assert ("promote", 0.0) not in h.target.calls


class RejectLater(FakeClock):
    """A clock under which a release manager runs `gatekeeper reject` after ``after`` s."""

    def __init__(self, store, release_id: str, after: float) -> None:
        super().__init__()
        self.store, self.release_id, self.after = store, release_id, after

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        record = self.store.get_release(self.release_id)
        if (self.t - T0).total_seconds() >= self.after and record.phase is Phase.HOLDING:
            self.store.set_phase(
                self.release_id, Phase.ROLLING_BACK, "approve-promote rejected by rm: too risky"
            )


def test_a_rejected_approval_rolls_the_release_back_with_the_rejection_as_reason(make):
    s = spec()
    h = make(plan=_approval_plan(s))
    h.clock = RejectLater(h.store, h.spec.release_id, after=60)
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason == "approve-promote rejected by rm: too risky"
    assert h.target.state().candidate_weight == 0
    assert ("promote", 0.0) not in h.target.calls


# -- a candidate that turns bad after its analysis ---------------------------------------------

ONSET = T0 + timedelta(minutes=7)  # after analyze-100 has passed


class TurnsBad(FakeProvider):
    """0.1% 5xx and fast until ``ONSET``; then ``errors`` 5xx and, when ``slow``, a p95 over
    500 ms (20% of requests take more than 0.5 s)."""

    def __init__(self, errors: float, slow: bool) -> None:
        super().__init__(traffic(lambda end: errors if end > ONSET else 0.001))
        self.slow = slow

    def buckets(self, profile, subjects, window_s, at):
        out = super().buckets(profile, subjects, window_s, at)
        if not self.slow or at <= ONSET:
            return out
        bad = {}
        for s, b in out.items():
            n = b[-1][1]
            slow_n = RPS * min(window_s, (at - ONSET).total_seconds())
            fast = n - slow_n if s.version == "v2" else n
            bad[s] = ((0.1, fast * 0.99), (0.5, fast), (float("inf"), n))
        return bad


def _plan_with_approval_before(last: str, s: ReleaseSpec) -> Plan:
    final = (
        Promote(name="promote") if last == "promote" else ShiftTraffic(name="shift-100", weight=100)
    )
    return Plan(
        release=s.release_id,
        strategy="canary",
        steps=(
            DeployCandidate(name="deploy"),
            ShiftTraffic(name="shift-50", weight=50),
            Analyze(name="analyze-50", duration=300),
            WaitForApproval(name="approve", roles=("release-manager", "cto")),
            final,
            *((Promote(name="promote"),) if last != "promote" else ()),
        ),
    )


def _approving(tmp_path: Path, provider: FakeProvider, approve_after_s: float, last: str):
    s = spec(hold_timeout="1h")
    h = Harness(tmp_path, s, _plan_with_approval_before(last, s), provider)
    h.clock = ApproveLater(h.store, s.release_id, "approve", after=approve_after_s)
    return h


def _executor(h: Harness) -> LocalExecutor:
    ex = h.executor()
    ex.clock = h.clock
    ex.gates.clock = h.clock
    return ex


def test_a_candidate_that_turns_bad_while_waiting_for_approval_is_rolled_back_not_promoted(
    tmp_path: Path,
):
    """The review's input: after the analysis passes, 4% 5xx and p95 over 500 ms for 20
    minutes, then the approval: it was promoted, judged only by the abort guard."""
    approve_at = (ONSET - T0).total_seconds() + 20 * 60
    h = _approving(tmp_path, TurnsBad(0.04, slow=True), approve_at, "promote")
    out = _executor(h).run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith("latency: p95 latency"), out.reason
    assert ("promote", 0.0) not in h.target.calls
    assert h.target.state().candidate_weight == 0
    # At once, not at the approval: the latency gate runs every 30s during the wait.
    assert h.clock.now() - ONSET < timedelta(minutes=2)


@pytest.mark.parametrize("last", ["promote", "shift-100"])
def test_a_step_that_adds_traffic_after_a_wait_takes_a_fresh_verdict(tmp_path: Path, last: str):
    """4% 5xx from after the analysis; approved 5 minutes later, while the sustained gate
    warns: the next step holds on the fresh verdict, then rolls back once the breach has
    held 15 minutes. Trusting the old analysis promoted it."""
    approve_at = (ONSET - T0).total_seconds() + 5 * 60
    h = _approving(tmp_path, TurnsBad(0.04, slow=False), approve_at, last)
    out = _executor(h).run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith("sustained: error ratio 4% > 2%"), out.reason
    assert h.target.weights == [50, 0]  # never more traffic than before the wait
    phases = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "phase"]
    assert any(p.startswith(f"holding: holding before {last}: sustained:") for p in phases), phases


def test_a_healthy_candidate_is_promoted_after_the_wait_with_a_fresh_verdict(tmp_path: Path):
    h = _approving(tmp_path, FakeProvider(traffic(0.001)), 30 * 60, "promote")
    out = _executor(h).run()
    assert out.phase is Phase.PROMOTED, out.reason
    gates_events = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "gates"]
    assert gates_events == [
        "shift-50: every gate judged now: go",
        "promote: every gate judged now: go",
    ]


def test_a_failure_during_the_scale_down_delay_flips_traffic_back_to_the_old_version(
    tmp_path: Path,
):
    s = spec()
    plan = Plan(
        release=s.release_id,
        strategy="blue-green",
        steps=(
            DeployCandidate(name="deploy"),
            ShiftTraffic(name="shift-100", weight=100),
            Analyze(name="bake", duration=360),
            Promote(name="promote", scale_down_delay=600),
        ),
    )
    h = Harness(tmp_path, s, plan, TurnsBad(0.001, slow=True))
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason.startswith("latency:"), out.reason
    assert ("promote", 0.0) not in h.target.calls
    state = h.target.state()
    assert (state.stable_version, state.candidate_weight) == ("v1", 0)


class AbortingStore:
    """The real store, where a person aborts the release just before the executor's
    next phase write (after its once-a-second check has passed)."""

    def __init__(self, inner, url: str) -> None:
        self.inner, self.url, self.done = inner, url, False

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def set_phase(self, release_id, phase, reason, **kw):
        if not self.done and phase is Phase.HOLDING:
            self.done = True
            other = SqlStore.open(self.url)  # another process
            other.set_phase(release_id, Phase.ABORTED, "aborted by rm: freeze")
            other.close()
        return self.inner.set_phase(release_id, phase, reason, **kw)


def test_an_abort_between_the_check_and_the_next_write_wins(make, tmp_path: Path):
    h = make(error_ratio=0.03)  # the sustained gate warns: the executor writes "holding"
    h.store = AbortingStore(h.store, f"sqlite:///{tmp_path / 'gk.db'}")
    out = h.executor().run()
    assert out.phase is Phase.ABORTED, out.reason
    assert out.reason == "aborted by rm: freeze"
    record = h.store.get_release(h.spec.release_id)
    assert (record.phase, record.reason) == (Phase.ABORTED, "aborted by rm: freeze")
    assert h.target.state().candidate_weight == 0


def _crash_after_first_shift(h: Harness, problems: list[tuple[str, ...]]) -> None:
    """From the first shift on, the candidate's health reads ``problems`` in turn (the
    last one for ever)."""
    reads = iter(problems)
    last: list[tuple[str, ...]] = [()]

    def health(version: str) -> Health:
        if not h.target.weights:
            return Health()
        last[0] = next(reads, last[0])
        return Health(last[0])

    h.target.health = health  # type: ignore[method-assign]


def test_a_crashed_candidate_is_rolled_back_on_its_p0_signal_without_waiting_for_metrics(make):
    h = make()  # the metrics stay healthy: the crash is seen only by the supervisor
    crashed = ("candidate app 2.0: process 4242 on 127.0.0.1:9101 is not running",)
    _crash_after_first_shift(h, [crashed])
    out = h.executor().run()
    assert out.phase is Phase.ROLLED_BACK, out.reason
    assert out.reason == f"p0: {crashed[0]}"
    assert h.target.weights == [25, 0]
    assert not any(c[0] == "promote" for c in h.target.calls)
    p0 = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "p0"]
    assert p0 == [f"{crashed[0]} (rolling back if still so at the next read)"]


def test_a_problem_seen_once_then_gone_does_not_roll_back(make):
    h = make()
    _crash_after_first_shift(h, [("pod app-2-x not ready",), ()])
    out = h.executor().run()
    assert out.phase is Phase.PROMOTED, out.reason
    p0 = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "p0"]
    assert p0[-1] == "the candidate's workloads are healthy again"


def test_a_failing_health_read_is_recorded_and_the_release_goes_on(make):
    h = make()

    def health(version: str) -> Health:
        raise TemporaryError("apiserver: 503 Service Unavailable")

    h.target.health = health
    out = h.executor().run()
    assert out.phase is Phase.PROMOTED, out.reason
    p0 = [e.message for e in h.store.events(h.spec.release_id) if e.kind == "p0"]
    assert (
        p0
        and p0[0] == "reading the candidate's workloads failed: apiserver: 503 Service Unavailable"
    )
