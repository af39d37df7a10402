"""Leader election: one active controller among the replicas, by a lease with fencing.

A ``Lease`` grants terms (``gatekeeper.domain.fencing.Term``), each with an epoch higher
than the last. The ``LeaderElector`` keeps trying to take the lease, renews it while it
holds it, and holds itself deposed as soon as a renewal is refused or it could not renew
for the lease's duration, measured on the monotonic clock from before the last
successful renewal began: by the time the lease expires for the others, this replica
has stopped acting already. The fence in the store catches the rest (a replica paused
past its lease and writing before it notices).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.fencing import Term
from gatekeeper.store.base import ServiceStore

log = logging.getLogger("gatekeeper.leader")


class Lease(Protocol):
    name: str

    def acquire(self, holder: str) -> Term | None:
        """A term for ``holder`` (a new one, or the one it holds), or None: another holds it."""
        ...

    def renew(self, term: Term) -> bool:
        """Extend ``term``; False when it is over."""
        ...

    def release(self, term: Term) -> None:
        """Give the lease up now, so a standby takes over at once."""
        ...


def holder_id() -> str:
    """This replica's identity: its host name and a random suffix (a restart is a new one)."""
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class DatabaseLease:
    """The lease as a row of the store; the row's epoch is the fence."""

    def __init__(
        self, store: ServiceStore, name: str, duration_s: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.store = store
        self.name = name
        self.duration_s = duration_s
        self.clock = clock

    def acquire(self, holder: str) -> Term | None:
        return self.store.acquire_lease(self.name, holder, self.clock.now(), self.duration_s)

    def renew(self, term: Term) -> bool:
        return self.store.renew_lease(term, self.clock.now(), self.duration_s)

    def release(self, term: Term) -> None:
        self.store.release_lease(term, self.clock.now())


class LeaderElector:
    """Holds the lease for this replica when it can; ``term()`` is the current term, or
    None on a standby. Runs in its own thread between ``start`` and ``stop``."""

    def __init__(
        self,
        lease: Lease,
        *,
        duration_s: float,
        renew_s: float,
        holder: str | None = None,
        on_change: Callable[[Term | None], None] = lambda term: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.holder = holder or holder_id()
        self.on_change = on_change
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._term: Term | None = None
        self._valid_until = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-elector", daemon=True)

    def term(self) -> Term | None:
        """The term this replica holds now; None when it does not (or no longer) lead."""
        with self._lock:
            if self._term is not None and self._monotonic() >= self._valid_until:
                return None
            return self._term

    def held(self, term: Term) -> bool:
        """Whether ``term`` is still this replica's current, valid term."""
        return self.term() == term

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop electing, and give the lease up if this replica holds it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            term, self._term = self._term, None
        if term is not None:
            try:
                self.lease.release(term)
            except Exception as e:  # the lease then simply expires
                log.warning("lease %s: could not give it up: %s", self.lease.name, e)
            self.on_change(None)

    def step(self) -> None:
        """One round: take the lease, or renew it (the thread calls this every renew_s)."""
        with self._lock:
            term = self._term
        started = self._monotonic()
        if term is None:
            try:
                won = self.lease.acquire(self.holder)
            except Exception as e:
                log.warning("lease %s: cannot be read: %s", self.lease.name, e)
                return
            if won is not None:
                self._set(won, started + self.duration_s)
                log.info("lease %s: leading as %s", self.lease.name, won)
            return
        try:
            renewed = self.lease.renew(term)
        except Exception as e:  # keep the term while it is still valid
            log.warning("lease %s: renewal failed: %s", self.lease.name, e)
            renewed = None
        if renewed:
            self._set(term, started + self.duration_s)
        elif renewed is False or self._monotonic() >= self._valid_until:
            log.warning("lease %s: term %s is over", self.lease.name, term)
            self._set(None, float("-inf"))

    def _set(self, term: Term | None, valid_until: float) -> None:
        with self._lock:
            changed = term != self._term
            self._term, self._valid_until = term, valid_until
        if changed:
            self.on_change(term)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            wait = self.renew_s
            if self.term() is None:
                wait = min(self.renew_s, max(0.1, self.duration_s / 5))
            self._stop.wait(wait)
