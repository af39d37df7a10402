"""The controller loop: on the leader only, start what the policy lets start and drive it.

Every ``interval`` the leader reads the unfinished releases through its fenced store:

1. each active release without a driver gets one (a new leader resumes the releases the
   last one drove; their next step runs from where the store says);
2. each queued release is decided by the policy (``Scheduler``): one that may start moves
   to pending, compare-and-set from queued (so an abort meanwhile wins), and gets a
   driver; one that waits keeps its reason, and a changed reason is recorded and audited.

A standby does nothing here; its API still answers. When the term ends (a newer leader,
a lapsed lease, the service stopping) the fenced store refuses the drivers' next access
and they stop without acting.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime

from gatekeeper.domain.access import EXPEDITED_APPROVAL_STEP
from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.fencing import Deposed, Term
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.store.base import Event, ServiceStore

from .. import audit
from ..notify import EventKind, Notification, Notifier
from ..service_metrics import ServiceMetrics
from .driver import Drivers
from .leader import LeaderElector
from .listener import CONTROLLER
from .scheduler import Scheduler, Verdict

log = logging.getLogger("gatekeeper.service")


class Controller:
    """Runs the loop in its own thread while this replica leads."""

    def __init__(
        self,
        store: ServiceStore,
        elector: LeaderElector,
        scheduler: Scheduler,
        drivers: Drivers,
        metrics: ServiceMetrics,
        notifier: Notifier,
        *,
        interval_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.elector = elector
        self.scheduler = scheduler
        self.drivers = drivers
        self.metrics = metrics
        self.notifier = notifier
        self.interval_s = interval_s
        self.clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controller", daemon=True)
        self._queues: set[tuple[str, str]] = set()

    def start(self) -> None:
        self.elector.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop deciding and driving; the drivers stop at their next store access (their
        releases stay where they are, for the next leader); then give the lease up."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.drivers.join(timeout)
        self.elector.stop(timeout)
        self.metrics.leader(False)

    def alive(self, term: Term) -> bool:
        """Whether ``term`` may still act: this replica holds it and is not stopping."""
        return not self._stopping.is_set() and self.elector.held(term)

    def tick(self) -> None:
        """One pass of the loop (the thread calls it every interval; tests call it too)."""
        term = self.elector.term()
        self.metrics.leader(term is not None)
        if term is None or self._stopping.is_set():
            return
        store = self.store.fenced(term, lambda: self.alive(term))
        try:
            self._pass(term, store)
        except Deposed as e:
            log.warning("controller: %s", e)

    def _pass(self, term: Term, store: ServiceStore) -> None:
        records = store.unfinished_releases()
        for record in records:
            if record.phase.active:
                self.drivers.ensure(record, term, store)
        verdicts = self.scheduler.decide(records, store.approvals)
        for verdict in verdicts:
            self._apply(term, store, verdict)
        lengths = Counter(
            (v.record.app, v.record.environment) for v in verdicts if not v.decision.starts
        )
        for key in self._queues | set(lengths):
            self.metrics.queue_length(*key, lengths.get(key, 0))
        self._queues = set(lengths)

    def _apply(self, term: Term, store: ServiceStore, verdict: Verdict) -> None:
        record, decision = verdict.record, verdict.decision
        rid = record.release_id
        detail: dict[str, object] = {
            "decision": decision.action,
            "cause": decision.cause,
            "reason": decision.reason,
            "not_before": None if decision.not_before is None else decision.not_before.isoformat(),
            "controller": term.holder,
            "epoch": term.epoch,
        }
        now = self.clock.now()
        if not decision.starts:
            if decision.reason == record.reason:
                return  # decided so before: recorded then
            try:
                store.set_phase(rid, Phase.QUEUED, decision.reason, expected=[Phase.QUEUED])
            except InvalidInput:
                return  # aborted meanwhile
            store.record_event(Event(rid, now, "queued", decision.reason))
            audit.record(store, CONTROLLER, "policy-decision", rid, detail, clock=self.clock)
            if decision.cause == "approval":
                self._expedited_waits(record.spec, rid, decision.reason, record.created_at)
            return
        try:
            store.set_phase(rid, Phase.PENDING, decision.reason, expected=[Phase.QUEUED])
        except InvalidInput as e:  # aborted meanwhile, or another release became active
            log.info("release %s: not started: %s", rid, e)
            return
        store.record_event(Event(rid, now, "started", decision.reason))
        audit.record(store, CONTROLLER, "policy-decision", rid, detail, clock=self.clock)
        started = store.get_release(rid)
        if started is not None:
            self._notify_started(started.spec, decision.reason)
            self.drivers.ensure(started, term, store)

    def _notify_started(self, spec: dict[str, object], reason: str) -> None:
        self._notify(spec, EventKind.STARTED, reason)

    def _expedited_waits(
        self, spec: dict[str, object], rid: str, reason: str, since: datetime
    ) -> None:
        """An expedited release waits for its approval before it starts: counted as an
        approval waiting, and the receivers are told."""
        app, environment = str(spec["app"]), str(spec.get("environment", "production"))
        self.metrics.approval_waiting(app, environment, rid, EXPEDITED_APPROVAL_STEP, since=since)
        self._notify(spec, EventKind.APPROVAL_NEEDED, reason, step=EXPEDITED_APPROVAL_STEP)

    def _notify(
        self, spec: dict[str, object], kind: EventKind, reason: str, step: str | None = None
    ) -> None:
        try:
            parsed = parse_release(dict(spec))
            self.notifier.notify(
                Notification.of(parsed, kind, at=self.clock.now(), reason=reason, step=step)
            )
        except Exception as e:  # a notification never stops a release
            log.warning("notify %s: %s", kind.value, e)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # the loop survives a bad pass; the next one tries again
                log.exception("controller: pass failed")
            self._stopping.wait(self.interval_s)
