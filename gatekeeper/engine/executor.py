"""The local executor: runs a plan in-process, guarded by the abort gate at every moment.

Progress is persisted after every step, so a killed process resumes where it
stopped. Steps are idempotent: each reads the target's actual state before acting,
so a resumed release never shifts traffic twice. The steps themselves live in
``engine/steps`` (the same code `gatekeeper step run` runs); this module orders them
and turns what ends a release early into its rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gatekeeper.domain.clock import Clock, SystemClock
from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.store.base import ReleaseRecord, Store
from gatekeeper.targets.base import Target, TrafficRouter
from gatekeeper.targets.base import TargetState as TargetState  # the CLI's view of traffic
from gatekeeper.targets.routers.local import LocalRouter
from gates.live import LiveGates

from .judge import Judge
from .listener import Listener, QuietListener
from .records import Recorder
from .signals import AbortedElsewhere, GateFailed, HoldTimedOut, RolledBackElsewhere
from .steps import StepContext, run_step

__all__ = [
    "Clock",
    "Hooks",
    "Listener",
    "LocalExecutor",
    "Outcome",
    "QuietListener",
    "SystemClock",
    "TargetState",
    "new_record",
]


@dataclass(frozen=True)
class Outcome:
    release_id: str
    phase: Phase
    reason: str


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
        router: TrafficRouter | None = None,
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
        self.router = router
        self.gates = gates
        self.clock = clock or SystemClock()
        self.listener = listener or QuietListener()
        self.hooks = hooks or Hooks()
        self.on_deployed = on_deployed
        self.stop_requested = stop_requested
        self.metrics_timeout_s = metrics_timeout_s
        self.record_interval_s = record_interval_s
        self.release_id = spec.release_id

    def _context(self) -> StepContext:
        # Built when the run starts: tests swap the clock or the store after construction.
        recorder = Recorder(
            self.release_id,
            self.store,
            self.clock,
            self.listener,
            record_interval_s=self.record_interval_s,
        )
        judge = Judge(
            self.spec,
            self.gates,
            self.store,
            recorder,
            self.clock,
            stop_requested=self.stop_requested,
            health=lambda: self.target.health(self.spec.version),
        )
        return StepContext(
            spec=self.spec,
            workloads=self.target,
            router=self.router or LocalRouter(self.target),
            judge=judge,
            recorder=recorder,
            clock=self.clock,
            on_deployed=self.on_deployed,
            metrics_timeout_s=self.metrics_timeout_s,
        )

    # -- the release ----------------------------------------------------------------------

    def run(self) -> Outcome:
        ctx = self._context()
        record = self.store.get_release(self.release_id)
        if record is None:
            raise StepFailed(f"release {self.release_id} is not in the store")
        if record.phase.final:
            return Outcome(self.release_id, record.phase, record.reason)
        if record.phase is Phase.ROLLING_BACK:
            intended = Phase.ABORTED if record.stopped else Phase.ROLLED_BACK
            return self._rollback(ctx, intended, record.reason)
        if record.next_step > 0:
            nxt = self.plan.steps[min(record.next_step, len(self.plan.steps) - 1)]
            total = len(self.plan.steps)
            msg = f"resuming at step {record.next_step + 1} of {total} ({nxt.name})"
            ctx.recorder.event("resumed", msg)
        try:
            ctx.recorder.phase(Phase.RUNNING, "running")
            start_release(ctx)
            for index in range(record.next_step, len(self.plan.steps)):
                step = self.plan.steps[index]
                self.listener.step(index, len(self.plan.steps), step)
                ctx.recorder.event("step-started", f"{step.name}: {step.describe()}")
                ctx.judge.check_stop()
                ctx.judge.guard()
                run_step(self.spec, step, ctx)
                self.hooks.before_complete(index)
                self.store.complete_step(self.release_id, index, step.name, "done")
                self.hooks.after_complete(index)
                ctx.recorder.event("step-completed", step.name)
            reason = f"{self.spec.app} {self.spec.version} promoted"
            ctx.recorder.phase(Phase.PROMOTED, reason)
            return Outcome(self.release_id, Phase.PROMOTED, reason)
        except BaseException as e:
            ended = ending(e)
            if ended is None:
                raise
            phase, reason = ended
            if phase is Phase.FAILED:
                what = reason.removeprefix("internal error: ")
                ctx.recorder.best_effort(lambda: ctx.recorder.event("error", what))
            return self._rollback(ctx, phase, reason)

    def _rollback(self, ctx: StepContext, phase: Phase, reason: str) -> Outcome:
        """Traffic back to stable first; the records are written around it, best effort, so a
        store outage never keeps traffic on a failing candidate."""
        recorder = ctx.recorder
        ended: Phase | None = None  # another process ended it first (an abort): it stays so
        try:
            recorder.set_phase(Phase.ROLLING_BACK, reason, stopped=phase is Phase.ABORTED)
        except PhaseConflict as e:
            ended = e.current if e.current.final else None
        except Exception as e:
            self.listener.event("error", f"could not record: {type(e).__name__}: {e}")
        recorder.best_effort(lambda: recorder.event("rollback", f"rolling back: {reason}"))
        try:
            for step in self.plan.rollback:
                run_step(self.spec, step, ctx)
        except Exception as e:  # the release still ends; say the rollback did not finish
            reason = f"{reason}; rollback did not finish: {type(e).__name__}: {e}"
            phase = Phase.FAILED
        recorder.best_effort(ctx.traffic)
        if ended is not None:
            return Outcome(self.release_id, ended, reason)
        recorder.best_effort(lambda: recorder.phase(phase, reason))
        return Outcome(self.release_id, phase, reason)


def start_release(ctx: StepContext) -> None:
    """Before any step (and again on resume): stable runs and is scraped; if the candidate
    already has traffic, the gates know it."""
    ctx.workloads.ensure_stable(ctx.stable_run())
    if ctx.on_deployed:
        ctx.on_deployed(ctx.workloads.metrics_endpoints())
    ctx.traffic()
    weight = ctx.router.weight()
    # A resumed release, or one step run alone: the traffic gate judges from now on.
    ctx.judge.gates.weight_told(weight, ctx.clock.now())
    if weight > 0:
        ctx.judge.gates.traffic_started(ctx.clock.now())  # resumed with traffic flowing


def ending(e: BaseException) -> tuple[Phase, str] | None:
    """The phase a release ends in for what stopped it, and why; None: not ours to handle
    (a crash the process does not survive)."""
    if isinstance(e, GateFailed | StepFailed | RolledBackElsewhere):
        return Phase.ROLLED_BACK, str(e)
    if isinstance(e, HoldTimedOut | AbortedElsewhere):
        return Phase.ABORTED, str(e)
    if isinstance(e, KeyboardInterrupt):
        return Phase.ABORTED, "stopped by the operator"
    if isinstance(e, Exception):
        return Phase.FAILED, f"internal error: {type(e).__name__}: {e}"
    return None


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
