"""Driving releases: one thread per active release, each running ``run_release`` to its end.

A driver runs (or resumes) its release with the leader's fenced store, so every write of
the run checks the leader's term. How a run can end:

- an outcome: the release ended (promoted, rolled back, aborted, failed); the outcome is
  counted, notified and audited;
- ``Deposed``: the term is over; the driver stops without touching anything, and the
  next leader resumes the release where the store says it is;
- a temporary error (a store or an API server unavailable): tried again after a backoff;
- any other error before or around the run (Prometheus not answering, a Kubernetes
  object missing): the release is marked stalled with the reason and waits for a person
  to retry it (or abort it); the step it stopped at runs again then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import TemporaryError
from gatekeeper.domain.fencing import Deposed, Term
from gatekeeper.domain.release import ReleaseSpec, parse_release
from gatekeeper.store.base import Event, ReleaseRecord, ServiceStore

from .. import audit
from ..argo_settings import ArgoSettings
from ..executor import Outcome
from ..notify import EventKind, Notifier
from ..runner import RunOptions, run_release
from ..service_metrics import ServiceMetrics
from .listener import CONTROLLER, ServiceListener

log = logging.getLogger("gatekeeper.service")

RunFn = Callable[[ReleaseSpec, RunOptions], Outcome]
MAX_BACKOFF_S = 60.0


def default_run(spec: ReleaseSpec, options: RunOptions) -> Outcome:
    return run_release(spec, options)


@dataclass(frozen=True)
class Runtime:
    """What every run gets from the service's configuration."""

    prometheus_url: str | None = None
    db_url: str | None = None
    kubeconfig: str | None = None
    argo: ArgoSettings | None = None
    public_url: str | None = None

    def release_url(self, release_id: str) -> str | None:
        if self.public_url is None:
            return None
        return f"{self.public_url.rstrip('/')}/api/v1/releases/{release_id}"


class Drivers:
    """The driver threads of one replica, at most one per release."""

    def __init__(
        self,
        runtime: Runtime,
        metrics: ServiceMetrics,
        notifier: Notifier,
        *,
        run: RunFn = default_run,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.notifier = notifier
        self.run = run
        self.clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._backoff: dict[str, tuple[float, float]] = {}  # id -> (not before, last delay)

    def running(self, release_id: str) -> bool:
        with self._lock:
            thread = self._threads.get(release_id)
            return thread is not None and thread.is_alive()

    def count(self) -> int:
        with self._lock:
            return sum(1 for t in self._threads.values() if t.is_alive())

    def ensure(self, record: ReleaseRecord, term: Term, store: ServiceStore) -> bool:
        """Start a driver for ``record`` unless one runs, it is stalled or backing off."""
        rid = record.release_id
        if record.stalled is not None or not record.phase.active:
            return False
        with self._lock:
            thread = self._threads.get(rid)
            if thread is not None and thread.is_alive():
                return False
            not_before = self._backoff.get(rid, (0.0, 0.0))[0]
            if self._monotonic() < not_before:
                return False
            thread = threading.Thread(
                target=self._drive, args=(record, term, store), name=f"drive-{rid}", daemon=True
            )
            self._threads[rid] = thread
        thread.start()
        return True

    def join(self, timeout: float) -> None:
        """Wait for the drivers to end (their term over, they stop at their next access)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}

    # -- one driver -------------------------------------------------------------------------

    def _drive(self, record: ReleaseRecord, term: Term, store: ServiceStore) -> None:
        rid = record.release_id
        detail: dict[str, object] = {"controller": term.holder, "epoch": term.epoch}
        try:
            spec = parse_release(record.spec, source=f"release {rid}")
            listener = ServiceListener(
                spec,
                store,
                self.metrics,
                self.notifier,
                term_detail=detail,
                url=self.runtime.release_url(rid),
                clock=self.clock,
                provider="prometheus" if self.runtime.prometheus_url else "scraper",
            )
            options = RunOptions(
                prometheus_url=self.runtime.prometheus_url,
                db_url=self.runtime.db_url,
                kubeconfig=self.runtime.kubeconfig,
                argo=self.runtime.argo,
                store=store,
                listener=listener,
            )
            log.info("release %s: driving (%s)", rid, term)
            outcome = self.run(spec, options)
        except Deposed as e:
            log.info("release %s: stopped driving: %s", rid, e)
            return
        except TemporaryError as e:
            self._back_off(rid, e)
            return
        except Exception as e:
            self._stall(store, rid, f"{type(e).__name__}: {e}", detail)
            return
        with self._lock:
            self._backoff.pop(rid, None)
        self._ended(store, spec, outcome, listener, detail)

    def _ended(
        self,
        store: ServiceStore,
        spec: ReleaseSpec,
        outcome: Outcome,
        listener: ServiceListener,
        detail: dict[str, object],
    ) -> None:
        if not outcome.phase.final:
            return
        kind = EventKind.ending(outcome.phase)
        if kind is not None:
            listener.notify(kind, reason=outcome.reason)
        try:
            self.metrics.release_finished(spec.app, spec.environment, outcome.phase)
            audit.record(
                store,
                CONTROLLER,
                "outcome",
                spec.release_id,
                {"phase": outcome.phase.value, "reason": outcome.reason, **detail},
                clock=self.clock,
            )
        except Deposed:
            return
        except Exception as e:
            log.warning("release %s: recording its outcome: %s", spec.release_id, e)

    def _back_off(self, rid: str, e: TemporaryError) -> None:
        with self._lock:
            last = self._backoff.get(rid, (0.0, 0.0))[1]
            delay = min(MAX_BACKOFF_S, max(e.delay, last * 2, 1.0))
            self._backoff[rid] = (self._monotonic() + delay, delay)
        log.warning("release %s: temporary error, trying again in %.0fs: %s", rid, delay, e)

    def _stall(self, store: ServiceStore, rid: str, reason: str, detail: dict[str, object]) -> None:
        log.error("release %s: stalled: %s", rid, reason)
        try:
            if store.set_stalled(rid, reason):
                store.record_event(
                    Event(rid, self.clock.now(), "stalled", f"{reason}; retry or abort it")
                )
                audit.record(
                    store, CONTROLLER, "stall", rid, {"reason": reason, **detail}, clock=self.clock
                )
        except Deposed:
            return
        except Exception as e:
            log.warning("release %s: could not record the stall: %s", rid, e)
