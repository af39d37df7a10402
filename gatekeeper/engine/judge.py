"""The gates while steps run: the abort guard, every gate during waits and holds, and the
fresh verdict a step needs before it gives the candidate more traffic.

The promote / hold / roll back rule itself is ``decide`` in the domain; this module
only applies it at the right moments, and raises what ends a release early.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gatekeeper.domain.clock import Clock
from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.domain.verdicts import Decision, GateResult, Verdict
from gatekeeper.store.base import Store
from gatekeeper.targets.base import Health
from gates.live import LiveGates

from .records import Recorder
from .signals import AbortedElsewhere, GateFailed, HoldTimedOut, RolledBackElsewhere

P0_READ_S = 1.0  # how often the candidate's workloads are read for P0 signals


class Judge:
    """Evaluates the gates for one release and stops it when they, or a person, say so."""

    def __init__(
        self,
        spec: ReleaseSpec,
        gates: LiveGates,
        store: Store,
        recorder: Recorder,
        clock: Clock,
        *,
        stop_requested: Callable[[], bool] = lambda: False,
        health: Callable[[], Health] | None = None,
    ) -> None:
        self.spec = spec
        self.gates = gates
        self.store = store
        self.recorder = recorder
        self.clock = clock
        self.stop_requested = stop_requested
        gate_set = gates.evaluator.gate_set
        guard_intervals = [g.interval for g in gate_set.guards]
        all_intervals = [g.interval for g in gate_set.gates]
        self.tick_s = max(0.05, min(5.0, min(guard_intervals or all_intervals) / 2))
        # How often a hold before a shift or promotion takes a fresh verdict of every gate.
        judged = [g.interval for g in gate_set.gates if not g.guard]
        self.judge_every_s = max(self.tick_s, min(judged or all_intervals))
        self._phase_checked: datetime | None = None
        # P0 signals: the candidate's workloads as their supervisor sees them (crash loops,
        # exited processes), read at most once a second; a problem seen at two reads in a
        # row rolls back without waiting for metrics.
        self.health = health
        self._health_read: datetime | None = None
        self._p0_pending: tuple[str, ...] = ()

    # -- evaluating ---------------------------------------------------------------------------

    def guard(self) -> None:
        """The guard gates (abort) and the P0 signals, evaluated between and during every
        step."""
        self.check_health()
        guards = self.gates.evaluator.gate_set.guards
        if guards:
            self._handle(self.gates.tick(guards))

    def tick(self, *, force: bool = False) -> list[GateResult]:
        """Every gate that is due (all when forced) and the P0 signals; a fail raises
        GateFailed."""
        self.check_health()
        results = self.gates.tick(force=force)
        self._handle(results)
        return results

    def check_health(self) -> None:
        """Roll back (GateFailed) when the candidate's workloads report a problem at two
        reads in a row, at least P0_READ_S apart. A read that fails is recorded and skipped:
        the metric guards still judge, and the next read tries again."""
        if self.health is None:
            return
        now = self.clock.now()
        if self._health_read is not None and (
            (now - self._health_read).total_seconds() < P0_READ_S
        ):
            return
        self._health_read = now
        try:
            problems = self.health().problems
        except Exception as e:  # a flaky API server must not end a release on its own
            self.recorder.event("p0", f"reading the candidate's workloads failed: {e}")
            return
        if not problems:
            if self._p0_pending:
                self.recorder.event("p0", "the candidate's workloads are healthy again")
            self._p0_pending = ()
            return
        if not self._p0_pending:
            self._p0_pending = problems
            self.recorder.event(
                "p0", f"{'; '.join(problems)} (rolling back if still so at the next read)"
            )
            return
        raise GateFailed(f"p0: {'; '.join(problems)}")

    def _handle(self, results: list[GateResult]) -> None:
        if not results:
            return
        self.recorder.gate_results(results)
        failed = [r for r in results if r.verdict is Verdict.FAIL]
        if failed:
            raise GateFailed("; ".join(r.reason for r in failed))

    def decision(self) -> tuple[Decision, str]:
        """The release decision from every gate's latest verdict, and what holds it."""
        decision, blockers = self.gates.decision()
        why = "; ".join(r.reason for r in blockers) or "waiting for every gate's verdict"
        return decision, why

    # -- waiting --------------------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        """Wait, with every gate evaluated on its own interval (a fail rolls back)."""
        until = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < until:
            self.check_stop()
            self.tick()
            self.clock.sleep(min(self.tick_s, max(0.0, until - self.clock.now().timestamp())))

    def require_fresh_pass(self, step: str) -> None:
        """Before the candidate gets more traffic or is promoted: every gate judged now.

        A fail rolls back; warn or inconclusive hold (bounded by hold_timeout) and the
        gates are judged again. Before the candidate's first traffic there is nothing to
        judge it on, so only fail and warn count then.
        """
        hold_start: datetime | None = None
        while True:
            self.check_stop()
            self.tick(force=True)
            now = self.clock.now()
            decision, why = self.decision()
            if self.gates.traffic_since is None:
                latest = list(self.gates.latest.values())
                held = [r for r in latest if r.verdict is Verdict.WARN]
                ready = not held
                why = "; ".join(r.reason for r in held)
            else:
                ready = decision is Decision.PROMOTE
            if ready:
                if hold_start is not None:
                    self.recorder.phase(Phase.RUNNING, "gates pass")
                self.recorder.event("gates", f"{step}: every gate judged now: go")
                return
            if hold_start is None:
                hold_start = now
                self.recorder.phase(Phase.HOLDING, f"holding before {step}: {why}")
            self.hold_deadline(hold_start, now, f"{step}: gates did not all pass", why)
            self.wait(self.judge_every_s)

    def hold_deadline(self, since: datetime, now: datetime, what: str, why: str = "") -> None:
        held = (now - since).total_seconds()
        limit = self.spec.scaled(self.spec.hold_timeout)
        if held >= limit:
            raise HoldTimedOut(
                f"{what} after holding {human_duration(held)} "
                f"(hold_timeout {human_duration(limit)})" + (f": {why}" if why else "")
            )

    def check_stop(self) -> None:
        """Ctrl-C here, or `gatekeeper abort` anywhere (read from the store once a second)."""
        if self.stop_requested():
            raise KeyboardInterrupt
        now = self.clock.now()
        if self._phase_checked is None or (now - self._phase_checked).total_seconds() >= 1.0:
            self._phase_checked = now
            record = self.store.get_release(self.spec.release_id)
            if record is not None and record.phase is Phase.ABORTED:
                raise AbortedElsewhere(record.reason)
            if record is not None and record.phase is Phase.ROLLING_BACK and record.stopped:
                # An abort recorded as a rollback to finish (gatekeeper serve's): it ends aborted.
                raise AbortedElsewhere(record.reason)
            if record is not None and record.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
                raise RolledBackElsewhere(record.reason)
