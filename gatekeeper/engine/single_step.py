"""`gatekeeper step run RELEASE STEP`: exactly one plan step, as an Argo pod runs it.

The same step code as the local executor, against the release in the store:

* Idempotent: a step before the release's next step is done already (a no-op, exit
  0); each step reads the actual state before acting, so a run after a crash mid-step
  finishes it without repeating a shift.
* In order: a step after the next one is refused (exit 2) and nothing is touched.
* ``rollback`` as the step runs the plan's rollback steps (what an Argo exit handler
  runs): traffic back to stable, and the release ends rolled back (or aborted, when
  it was stopped). Once ended, a rollback again is a no-op.
* ``guard`` as the step runs the abort guard (the guard gates and the P0 signals) beside
  the steps, one check each judge tick, until the release leaves its running phases:
  exit 0 when it ended (promoted, or rolled back or aborted by anyone), 3 with the
  rollback decision recorded when the guard fails, 75 on a temporary error. It only
  reads the workloads and the router; the steps and the rollback act on them.
* When a gate fails (3), a person aborted it (4) or the step cannot reach its goal
  (5), the decision is recorded (phase rolling_back) before the exit; the rollback
  step then carries it out. A temporary error (75) decides nothing: run it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from gatekeeper.domain.clock import SYSTEM_CLOCK
from gatekeeper.domain.errors import InvalidInput, StepFailed, TemporaryError
from gatekeeper.domain.exits import Exit
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.store.base import ReleaseRecord, Store
from gatekeeper.store.factory import open_store
from gatekeeper.targets.factory import workloads_for
from gatekeeper.targets.routers.factory import router_for

from .executor import ending, start_release
from .judge import Judge
from .listener import QuietListener
from .records import Recorder
from .runner import (
    RunOptions,
    evaluator_for,
    live_gates,
    provider_for,
    resolve_gates,
    target_dir,
)
from .signals import AbortedElsewhere, GateFailed, HoldTimedOut, RolledBackElsewhere
from .steps import StepContext, run_step

ROLLBACK = "rollback"
GUARD = "guard"
# The phases the guard watches; any other means the release has ended or is being ended.
GUARDED = (Phase.PENDING, Phase.RUNNING, Phase.HOLDING)
STATE_READ_S = 1.0  # how often the guard reads the release's phase and the router's weight


@dataclass(frozen=True)
class StepResult:
    code: Exit
    message: str


def run_one_step(release_id: str, step: str, options: RunOptions) -> StepResult:
    """Run step ``step`` (an index into the plan, or ``rollback``) of a stored release."""
    store = open_store(options.db_url)
    try:
        record = store.get_release(release_id)
        if record is None:
            raise InvalidInput(f"release {release_id!r} is not in the store")
        spec = parse_release(record.spec, source=f"release {release_id}")
        plan = Plan.model_validate(record.plan)
        if step == ROLLBACK:
            return _rollback(store, record, spec, plan, options)
        if step == GUARD:
            if record.phase not in GUARDED:
                return StepResult(Exit.DONE, _ended(record))
            with _context(store, record, spec, options) as ctx:
                # With the built-in scraper this process scrapes the versions itself.
                return guard_release(
                    store, ctx, plan, sync_endpoints=options.prometheus_url is None
                )
        index = _index(plan, step, release_id)
        if index < record.next_step:
            return StepResult(Exit.DONE, f"{_name(plan, index)} is done already")
        if record.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED):
            code = Exit.STOPPED if record.phase is Phase.ABORTED else Exit.ROLLED_BACK
            return StepResult(
                code,
                f"release {release_id} is {record.phase.value} ({record.reason}); "
                f"step {_name(plan, index)} will not run",
            )
        if record.phase.final:
            raise InvalidInput(
                f"release {release_id} is {record.phase.value} ({record.reason}); "
                f"step {_name(plan, index)} will not run"
            )
        if index > record.next_step:
            raise InvalidInput(
                f"release {release_id}: step {_name(plan, index)} comes after "
                f"{_name(plan, record.next_step)}, which is not done yet"
            )
        with _context(store, record, spec, options) as ctx:
            return _run(store, ctx, spec, plan, index)
    finally:
        store.close()


def _run(store: Store, ctx: StepContext, spec: ReleaseSpec, plan: Plan, index: int) -> StepResult:
    step = plan.steps[index]
    try:
        ctx.recorder.phase(Phase.RUNNING, f"running {step.name}")
        start_release(ctx)
        ctx.recorder.event("step-started", f"{step.name}: {step.describe()}")
        ctx.judge.check_stop()
        ctx.judge.guard()
        run_step(spec, step, ctx)
        store.complete_step(spec.release_id, index, step.name, "done")
        ctx.recorder.event("step-completed", step.name)
        if index == len(plan.steps) - 1:
            ctx.recorder.phase(Phase.PROMOTED, f"{spec.app} {spec.version} promoted")
        return StepResult(Exit.DONE, f"{step.name} done")
    except TemporaryError as e:
        return StepResult(Exit.TEMPORARY, f"{step.name}: temporary error, run it again: {e}")
    except RolledBackElsewhere as e:
        return StepResult(Exit.ROLLED_BACK, f"{step.name}: the release is rolling back: {e}")
    except (GateFailed, StepFailed, HoldTimedOut, AbortedElsewhere, KeyboardInterrupt) as e:
        phase, reason = ending(e) or (Phase.ROLLED_BACK, str(e))
        _decide_rollback(ctx, phase, reason, plan)
        code = (
            Exit.ROLLED_BACK
            if isinstance(e, GateFailed)
            else Exit.STEP_FAILED
            if isinstance(e, StepFailed)
            else Exit.STOPPED
        )
        return StepResult(code, reason)


def guard_release(
    store: Store, ctx: StepContext, plan: Plan, *, sync_endpoints: bool = False
) -> StepResult:
    """The abort guard of a release that runs elsewhere, until the release ends.

    Each judge tick: the guard gates and the P0 signals (``Judge.guard``). Once a second:
    the release's phase (the guard ends when it leaves ``GUARDED``) and the router's weight,
    so guard gates that stay inconclusive fail closed once the candidate has traffic, as
    they do in the local executor; with ``sync_endpoints`` also the versions to scrape.
    """
    release_id = ctx.spec.release_id
    judge = ctx.judge
    read_at: datetime | None = None
    try:
        while True:
            now = ctx.clock.now()
            if read_at is None or (now - read_at).total_seconds() >= STATE_READ_S:
                read_at = now
                record = store.get_release(release_id)
                if record is None:
                    raise InvalidInput(f"release {release_id!r} is not in the store")
                if record.phase not in GUARDED:
                    return StepResult(Exit.DONE, _ended(record))
                if sync_endpoints and ctx.on_deployed:
                    ctx.on_deployed(ctx.workloads.metrics_endpoints())
                weight = ctx.router.weight()
                judge.gates.weight_told(weight, now)
                if weight > 0:
                    judge.gates.traffic_started(now)
            judge.guard()
            ctx.clock.sleep(judge.tick_s)
    except TemporaryError as e:
        return StepResult(Exit.TEMPORARY, f"guard: temporary error, run it again: {e}")
    except GateFailed as e:
        _decide_rollback(ctx, Phase.ROLLED_BACK, str(e), plan)
        return StepResult(Exit.ROLLED_BACK, f"guard: {e}")


def _ended(record: ReleaseRecord) -> str:
    return (
        f"release {record.release_id} is {record.phase.value} ({record.reason}); "
        "nothing left to guard"
    )


def _decide_rollback(ctx: StepContext, phase: Phase, reason: str, plan: Plan) -> None:
    """Record the decision and carry it out at once: traffic back to stable first, as the
    local executor does, rather than after the workflow's other nodes end and its exit
    handler's pod starts. The exit handler's `rollback` then finds it done (and runs the
    idempotent rollback steps again, in case a step elsewhere moved traffic meanwhile)."""
    try:
        ctx.recorder.set_phase(Phase.ROLLING_BACK, reason, stopped=phase is Phase.ABORTED)
    except PhaseConflict:
        return  # ended elsewhere first (an abort): the rollback step finds it so
    ctx.recorder.best_effort(lambda: ctx.recorder.event("rollback", f"rolling back: {reason}"))
    try:
        for step in plan.rollback:
            run_step(ctx.spec, step, ctx)
    except Exception as e:  # noqa: BLE001 - the exit handler's rollback carries it out then
        said = f"rollback left to the exit handler: {type(e).__name__}: {e}"
        ctx.recorder.best_effort(lambda: ctx.recorder.event("error", said))
        return
    final = Phase.ABORTED if phase is Phase.ABORTED else Phase.ROLLED_BACK
    ctx.recorder.best_effort(lambda: ctx.recorder.phase(final, reason))


def _rollback(
    store: Store, record: ReleaseRecord, spec: ReleaseSpec, plan: Plan, options: RunOptions
) -> StepResult:
    if record.phase.final and record.phase not in (Phase.ABORTED, Phase.ROLLED_BACK):
        return StepResult(Exit.DONE, f"release {record.release_id} is {record.phase.value}")
    with _context(store, record, spec, options) as ctx:
        if not record.phase.final and record.phase is not Phase.ROLLING_BACK:
            try:
                ctx.recorder.set_phase(Phase.ROLLING_BACK, "rollback requested")
            except PhaseConflict:
                pass
        now = store.get_release(record.release_id)
        assert now is not None
        for step in plan.rollback:
            run_step(spec, step, ctx)
        if now.phase.final:  # aborted by a person: it stays so, traffic is now on stable
            return StepResult(Exit.DONE, f"{record.release_id} {now.phase.value}: {now.reason}")
        final = Phase.ABORTED if now.stopped else Phase.ROLLED_BACK
        ctx.recorder.phase(final, now.reason)
        return StepResult(Exit.DONE, f"{record.release_id} {final.value}: {now.reason}")


@contextmanager
def _context(
    store: Store, record: ReleaseRecord, spec: ReleaseSpec, options: RunOptions
) -> Iterator[StepContext]:
    gate_set = resolve_gates(spec)
    state_dir = target_dir(spec, options.state_dir)
    provider, sync, close_provider = provider_for(spec, options, state_dir)
    try:
        evaluator = evaluator_for(spec, gate_set, provider)
        target = workloads_for(spec, state_dir, kubeconfig=options.kubeconfig)
        try:
            clock = options.clock
            gates = live_gates(spec, evaluator, record.created_at, clock)
            the_clock = clock or SYSTEM_CLOCK
            listener = options.listener or QuietListener()
            recorder = Recorder(spec.release_id, store, the_clock, listener)
            judge = Judge(
                spec,
                gates,
                store,
                recorder,
                the_clock,
                stop_requested=options.stop_requested,
                health=lambda: target.health(spec.version),
            )
            yield StepContext(
                spec=spec,
                workloads=target,
                router=router_for(spec, target),
                judge=judge,
                recorder=recorder,
                clock=the_clock,
                on_deployed=sync,
                metrics_timeout_s=options.metrics_timeout_s,
            )
        finally:
            target.close()
    finally:
        close_provider()


def _index(plan: Plan, step: str, release_id: str) -> int:
    names = [s.name for s in plan.steps]
    if step.isdigit():
        index = int(step)
        if index >= len(plan.steps):
            raise InvalidInput(
                f"release {release_id}: step index {index} is out of range: the plan has "
                f"{len(plan.steps)} steps (0..{len(plan.steps) - 1}), {ROLLBACK!r} and {GUARD!r}"
            )
        return index
    if step in names:
        return names.index(step)
    raise InvalidInput(
        f"release {release_id}: no step {step!r}; give an index 0..{len(plan.steps) - 1}, "
        f"a step name ({', '.join(names)}), {ROLLBACK!r} or {GUARD!r}"
    )


def _name(plan: Plan, index: int) -> str:
    return f"{index} ({plan.steps[index].name})" if index < len(plan.steps) else str(index)
