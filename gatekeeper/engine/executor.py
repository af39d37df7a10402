"""The local executor: runs a plan in-process, guarded by the abort gate at every moment.

Progress is persisted after every step, so a killed process resumes where it
stopped. Steps are idempotent: each reads the target's actual state before acting,
so a resumed release never shifts traffic twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import tenacity

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import StepFailed, TemporaryError
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.plan import (
    Analyze,
    DeployCandidate,
    Plan,
    Promote,
    Rollback,
    ScaleBatch,
    ShiftTraffic,
    Verify,
    WaitForApproval,
)
from gatekeeper.domain.plan import (
    Step as PlanStep,
)
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.domain.verdicts import Decision, GateResult, Verdict, blocking
from gatekeeper.store.base import Event, ReleaseRecord, Store
from gatekeeper.targets.base import Target, VersionRun
from gatekeeper.targets.base import TargetState as TargetState  # the CLI's view of traffic
from gates.live import LiveGates

from .smoke import run_smoke_checks


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Listener(Protocol):
    """What a progress display hears."""

    def step(self, index: int, total: int, step: PlanStep) -> None: ...

    def event(self, kind: str, message: str) -> None: ...

    def gates(self, results: list[GateResult]) -> None: ...

    def traffic(self, state: TargetState) -> None: ...


class QuietListener:
    def step(self, index: int, total: int, step: PlanStep) -> None:
        pass

    def event(self, kind: str, message: str) -> None:
        pass

    def gates(self, results: list[GateResult]) -> None:
        pass

    def traffic(self, state: TargetState) -> None:
        pass


@dataclass(frozen=True)
class Outcome:
    release_id: str
    phase: Phase
    reason: str


class GateFailed(Exception):
    """A gate said fail: roll back."""


class AbortedElsewhere(Exception):
    """A person aborted the release (`gatekeeper abort`) while this run held it."""


class HoldTimedOut(Exception):
    """Held longer than the release's hold_timeout."""


class Hooks:
    """Points where tests simulate a crash (the process dying between two writes)."""

    def before_complete(self, index: int) -> None:
        pass

    def after_complete(self, index: int) -> None:
        pass


class LocalExecutor:
    def __init__(
        self,
        *,
        spec: ReleaseSpec,
        plan: Plan,
        store: Store,
        target: Target,
        gates: LiveGates,
        clock: Clock | None = None,
        listener: Listener | None = None,
        hooks: Hooks | None = None,
        on_deployed: Callable[[list[str]], None] | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
        metrics_timeout_s: float = 60.0,
        record_interval_s: float = 10.0,
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.store = store
        self.target = target
        self.gates = gates
        self.clock = clock or SystemClock()
        self.listener = listener or QuietListener()
        self.hooks = hooks or Hooks()
        self.on_deployed = on_deployed
        self.stop_requested = stop_requested
        self.metrics_timeout_s = metrics_timeout_s
        self.record_interval_s = record_interval_s
        self._recorded: dict[str, tuple[Verdict, datetime]] = {}
        self._phase_checked: datetime | None = None
        self.release_id = spec.release_id
        guard_intervals = [g.interval for g in gates.evaluator.gate_set.guards]
        all_intervals = [g.interval for g in gates.evaluator.gate_set.gates]
        self.tick_s = max(0.05, min(5.0, min(guard_intervals or all_intervals) / 2))
        # How often a hold before a shift or promotion takes a fresh verdict of every gate.
        judged = [g.interval for g in gates.evaluator.gate_set.gates if not g.guard]
        self._judge_every_s = max(self.tick_s, min(judged or all_intervals))

    # -- the release ----------------------------------------------------------------------

    def run(self) -> Outcome:
        record = self.store.get_release(self.release_id)
        if record is None:
            raise StepFailed(f"release {self.release_id} is not in the store")
        if record.phase.final:
            return Outcome(self.release_id, record.phase, record.reason)
        if record.phase is Phase.ROLLING_BACK:
            intended = Phase.ABORTED if record.stopped else Phase.ROLLED_BACK
            return self._rollback(intended, record.reason)
        if record.next_step > 0:
            nxt = self.plan.steps[min(record.next_step, len(self.plan.steps) - 1)]
            total = len(self.plan.steps)
            msg = f"resuming at step {record.next_step + 1} of {total} ({nxt.name})"
            self._event("resumed", msg)
        self._phase(Phase.RUNNING, "running")
        try:
            self.target.ensure_stable(self._stable_run())
            if self.on_deployed:
                self.on_deployed(self.target.metrics_endpoints())
            self._traffic()
            if self.target.state().candidate_weight > 0:
                self.gates.traffic_started(self.clock.now())  # resumed with traffic flowing
            for index in range(record.next_step, len(self.plan.steps)):
                step = self.plan.steps[index]
                self.listener.step(index, len(self.plan.steps), step)
                self._event("step-started", f"{step.name}: {step.describe()}")
                self._check_stop()
                self._guard()
                self._run_step(step)
                self.hooks.before_complete(index)
                self.store.complete_step(self.release_id, index, step.name, "done")
                self.hooks.after_complete(index)
                self._event("step-completed", step.name)
            reason = f"{self.spec.app} {self.spec.version} promoted"
            self._phase(Phase.PROMOTED, reason)
            return Outcome(self.release_id, Phase.PROMOTED, reason)
        except GateFailed as e:
            return self._rollback(Phase.ROLLED_BACK, str(e))
        except StepFailed as e:
            return self._rollback(Phase.ROLLED_BACK, str(e))
        except HoldTimedOut as e:
            return self._rollback(Phase.ABORTED, str(e))
        except AbortedElsewhere as e:
            return self._rollback(Phase.ABORTED, str(e))
        except KeyboardInterrupt:
            return self._rollback(Phase.ABORTED, "stopped by the operator")
        except Exception as e:
            what = f"{type(e).__name__}: {e}"
            self._best_effort(lambda: self._event("error", what))
            return self._rollback(Phase.FAILED, f"internal error: {what}")

    def _rollback(self, phase: Phase, reason: str) -> Outcome:
        """Traffic back to stable first; the records are written around it, best effort, so a
        store outage never keeps traffic on a failing candidate."""
        ended: Phase | None = None  # another process ended it first (an abort): it stays so
        try:
            self._set_phase(Phase.ROLLING_BACK, reason, stopped=phase is Phase.ABORTED)
        except PhaseConflict as e:
            ended = e.current if e.current.final else None
        except Exception as e:
            self.listener.event("error", f"could not record: {type(e).__name__}: {e}")
        self._best_effort(lambda: self._event("rollback", f"rolling back: {reason}"))
        try:
            for step in self.plan.rollback:
                if isinstance(step, Rollback):
                    self._retrying(self.target.rollback)
                else:
                    self._run_step(step)
        except Exception as e:  # the release still ends; say the rollback did not finish
            reason = f"{reason}; rollback did not finish: {type(e).__name__}: {e}"
            phase = Phase.FAILED
        self._best_effort(self._traffic)
        if ended is not None:
            return Outcome(self.release_id, ended, reason)
        self._best_effort(lambda: self._phase(phase, reason))
        return Outcome(self.release_id, phase, reason)

    def _retrying(self, action: Callable[[], None]) -> None:
        """A target action retried on TemporaryError, with backoff, for up to a minute."""
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TemporaryError),
            stop=tenacity.stop_after_delay(60) | tenacity.stop_after_attempt(20),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=5),
            sleep=self.clock.sleep,
            reraise=True,
        ):
            with attempt:
                action()

    def _best_effort(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as e:
            self.listener.event("error", f"could not record: {type(e).__name__}: {e}")

    # -- steps ----------------------------------------------------------------------------

    def _run_step(self, step: PlanStep) -> None:
        if isinstance(step, DeployCandidate):
            self.target.deploy_candidate(self._candidate_run(), step.scale_percent)
            if self.on_deployed:
                self.on_deployed(self.target.metrics_endpoints())
            self._await_metrics()
        elif isinstance(step, Verify):
            for line in run_smoke_checks(
                self.target.preview_url(), step.checks, sleep=self.clock.sleep
            ):
                self._event("verify", line)
        elif isinstance(step, ShiftTraffic):
            self._shift(step.weight, step.name)
        elif isinstance(step, ScaleBatch):
            state = self.target.state()
            if step.percent > state.candidate_weight:
                self._require_fresh_pass(step.name)
            if state.candidate_scale_percent < step.percent:
                self.target.deploy_candidate(self._candidate_run(), step.percent)
            if state.stable_scale_percent != 100 - step.percent:
                self.target.scale_stable(100 - step.percent)
            self._shift(step.percent, step.name, judged=True)
        elif isinstance(step, Analyze):
            self._analyze(step)
        elif isinstance(step, WaitForApproval):
            self._await_approval(step)
        elif isinstance(step, Promote):
            self._promote(step)
        elif isinstance(step, Rollback):
            self.target.rollback()
            self._traffic()
        else:  # pragma: no cover - the Step union is closed
            raise StepFailed(f"step {step.name}: unknown kind")

    def _await_metrics(self) -> None:
        """Before any traffic, wait (bounded) until the candidate's /metrics is scraped, so
        the gates see its first requests instead of a discovery delay.

        Scraped, not "its request series exist": client libraries create a labelled
        counter at its first request, and the candidate gets none before the first shift.
        """
        evaluator = self.gates.evaluator
        candidate = self.gates.release.candidate
        start = self.clock.now()
        while True:
            endpoints = self.target.metrics_endpoints(self.spec.version)
            if evaluator.scraped(endpoints, self.clock.now()):
                break
            waited = (self.clock.now() - start).total_seconds()
            if waited >= self.metrics_timeout_s:
                limit = human_duration(self.metrics_timeout_s)
                where = ", ".join(endpoints) or "no endpoint"
                raise StepFailed(
                    f"deploy: {evaluator.provider.name} has not seen {candidate}'s metrics "
                    f"({where}) after {human_duration(waited)} (limit {limit}); without them "
                    "no gate can judge it: is its /metrics scraped?"
                )
            self.clock.sleep(self.tick_s)
        waited = (self.clock.now() - start).total_seconds()
        self._event(
            "metrics",
            f"{candidate} seen by {evaluator.provider.name} after {human_duration(waited)}",
        )

    def _shift(self, weight: int, step: str, *, judged: bool = False) -> None:
        """``judged``: the caller took the fresh verdict a traffic increase needs."""
        state = self.target.state()
        if state.candidate_weight == weight:
            self._event("shift", f"traffic already at candidate {weight}%")
            return
        if weight > state.candidate_weight and not judged:
            self._require_fresh_pass(step)
        self.target.set_weight(weight)
        if weight > 0:
            self.gates.traffic_started(self.clock.now())
        self._event("shift", f"traffic: candidate {state.candidate_weight}% -> {weight}%")
        self._traffic()

    def _analyze(self, step: Analyze) -> None:
        self.gates.reset()
        start = self.clock.now()
        hold_start: datetime | None = None
        while True:
            self._check_stop()
            results = self._tick(force=False)
            now = self.clock.now()
            if (now - start).total_seconds() >= step.duration:
                decision, why = self._decision()
                if decision is Decision.PROMOTE:
                    if hold_start is not None:
                        self._phase(Phase.RUNNING, "gates pass")
                    return
                if hold_start is None:
                    hold_start = now
                    self._phase(Phase.HOLDING, f"holding: {why}")
                self._hold_deadline(hold_start, now, f"{step.name}: gates did not all pass", why)
            if not results:
                self.clock.sleep(self.tick_s)

    def _decision(self) -> tuple[Decision, str]:
        """The release decision from every gate's latest verdict, and what holds it."""
        decision, blockers = self.gates.decision()
        why = "; ".join(r.reason for r in blockers) or "waiting for every gate's verdict"
        return decision, why

    def _require_fresh_pass(self, step: str) -> None:
        """Before the candidate gets more traffic or is promoted: every gate judged now.

        A fail rolls back; warn or inconclusive hold (bounded by hold_timeout) and the
        gates are judged again. Before the candidate's first traffic there is nothing to
        judge it on, so only fail and warn count then.
        """
        hold_start: datetime | None = None
        while True:
            self._check_stop()
            self._tick(force=True)
            now = self.clock.now()
            decision, why = self._decision()
            if self.gates.traffic_since is None:
                held = [r for r in blocking(self.gates.latest.values())
                        if r.verdict is not Verdict.INCONCLUSIVE]
                ready = not held
                why = "; ".join(r.reason for r in held)
            else:
                ready = decision is Decision.PROMOTE
            if ready:
                if hold_start is not None:
                    self._phase(Phase.RUNNING, "gates pass")
                self._event("gates", f"{step}: every gate judged now: go")
                return
            if hold_start is None:
                hold_start = now
                self._phase(Phase.HOLDING, f"holding before {step}: {why}")
            self._hold_deadline(hold_start, now, f"{step}: gates did not all pass", why)
            self._wait(self._judge_every_s)

    def _wait(self, seconds: float) -> None:
        """Wait, with every gate evaluated on its own interval (a fail rolls back)."""
        until = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < until:
            self._check_stop()
            self._tick(force=False)
            self.clock.sleep(min(self.tick_s, max(0.0, until - self.clock.now().timestamp())))

    def _promote(self, step: Promote) -> None:
        """Judged afresh, the candidate takes all traffic; the old version stays up (at full
        size for canary and blue-green) for the scale-down delay with every gate evaluated,
        so a failure in it is a flip back; then the candidate becomes stable."""
        self._require_fresh_pass(step.name)
        if step.scale_down_delay > 0:
            self._shift(100, step.name, judged=True)
            old = self.spec.stable.version
            delay = human_duration(step.scale_down_delay)
            self._event("promote", f"{old} stays up for {delay} while the gates keep judging")
            self._wait(step.scale_down_delay)
        self.target.promote(0.0)
        self._event("promote", f"{self.spec.version} is now stable")
        self._traffic()

    def _await_approval(self, step: WaitForApproval) -> None:
        start = self.clock.now()
        self._phase(Phase.HOLDING, f"waiting for approval by {' or '.join(step.roles)}")
        while True:
            self._check_stop()
            for a in self.store.approvals(self.release_id):
                if a.step == step.name and a.role in step.roles:
                    self._event("approval", f"{step.name} approved by {a.approver} ({a.role})")
                    self._phase(Phase.RUNNING, "approved")
                    return
            # Every gate, not only the guard: a candidate that turns bad while a person
            # decides is rolled back, not promoted on an old analysis.
            self._tick(force=False)
            self._hold_deadline(start, self.clock.now(), f"{step.name}: no approval")
            self.clock.sleep(self.tick_s)

    def _hold_deadline(self, since: datetime, now: datetime, what: str, why: str = "") -> None:
        held = (now - since).total_seconds()
        limit = self.spec.scaled(self.spec.hold_timeout)
        if held >= limit:
            raise HoldTimedOut(
                f"{what} after holding {human_duration(held)} "
                f"(hold_timeout {human_duration(limit)})" + (f": {why}" if why else "")
            )

    def _check_stop(self) -> None:
        if self.stop_requested():
            raise KeyboardInterrupt
        now = self.clock.now()
        if self._phase_checked is None or (now - self._phase_checked).total_seconds() >= 1.0:
            self._phase_checked = now
            record = self.store.get_release(self.release_id)
            if record is not None and record.phase is Phase.ABORTED:
                raise AbortedElsewhere(record.reason)

    # -- gates ----------------------------------------------------------------------------

    def _guard(self) -> None:
        """The guard gates (abort), evaluated between and during every step."""
        guards = self.gates.evaluator.gate_set.guards
        if guards:
            self._handle(self.gates.tick(guards))

    def _tick(self, *, force: bool) -> list[GateResult]:
        results = self.gates.tick(force=force)
        self._handle(results)
        return results

    def _handle(self, results: list[GateResult]) -> None:
        if not results:
            return
        keep = [r for r in results if self._worth_recording(r)]
        if keep:
            self.store.record_gate_results(self.release_id, keep)
        self.listener.gates(results)
        failed = [r for r in results if r.verdict is Verdict.FAIL]
        if failed:
            raise GateFailed("; ".join(r.reason for r in failed))

    def _worth_recording(self, r: GateResult) -> bool:
        """Every change of verdict, and otherwise one result per gate each record interval:
        a guard judged four times a second need not write four rows a second."""
        last = self._recorded.get(r.gate)
        if (
            last is None
            or last[0] is not r.verdict
            or (r.at - last[1]).total_seconds() >= self.record_interval_s
        ):
            self._recorded[r.gate] = (r.verdict, r.at)
            return True
        return False

    # -- records --------------------------------------------------------------------------

    def _phase(self, phase: Phase, reason: str) -> None:
        try:
            self._set_phase(phase, reason)
        except PhaseConflict as e:
            if e.current is Phase.ABORTED:  # `gatekeeper abort` won: stop here
                record = self.store.get_release(self.release_id)
                raise AbortedElsewhere(record.reason if record else str(e)) from e
            raise
        self._event("phase", f"{phase.value}: {reason}")

    def _set_phase(self, phase: Phase, reason: str, *, stopped: bool | None = None) -> None:
        self.store.set_phase(self.release_id, phase, reason, stopped=stopped)

    def _event(self, kind: str, message: str) -> None:
        self.store.record_event(
            Event(release_id=self.release_id, at=self.clock.now(), kind=kind, message=message)
        )
        self.listener.event(kind, message)

    def _traffic(self) -> None:
        state = self.target.state()
        self.store.save_target_state(
            self.release_id,
            {
                "stable_version": state.stable_version,
                "candidate_version": state.candidate_version,
                "candidate_weight": state.candidate_weight,
            },
        )
        self.listener.traffic(state)

    def _stable_run(self) -> VersionRun:
        s = self.spec.stable
        return VersionRun(version=s.version, command=s.command, image=s.image)

    def _candidate_run(self) -> VersionRun:
        return VersionRun(
            version=self.spec.version, command=self.spec.command, image=self.spec.image
        )


def new_record(spec: ReleaseSpec, plan: Plan, now: datetime) -> ReleaseRecord:
    return ReleaseRecord(
        release_id=spec.release_id,
        app=spec.app,
        environment=spec.environment,
        version=spec.version,
        stable_version=spec.stable.version,
        strategy=spec.strategy.type,
        expedited=spec.expedited,
        spec=spec.model_dump(mode="json"),
        plan=plan.model_dump(mode="json"),
        phase=Phase.PENDING,
        reason="submitted",
        created_at=now,
        updated_at=now,
        next_step=0,
    )
