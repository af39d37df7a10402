"""The controller lease as a Kubernetes Lease, fenced by an epoch the store keeps.

The Lease object elects (``gatekeeper.targets.kubernetes.lease``, the one place that
talks to the API server); each new term then advances the store's fence, so the
store refuses the writes of every earlier term.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.fencing import Term
from gatekeeper.store.base import ServiceStore


class Acquisition(Protocol):
    @property
    def new_term(self) -> bool: ...


class LeaseObject(Protocol):
    def try_acquire(self, holder: str, now: datetime, duration_s: float) -> Acquisition | None: ...

    def renew(self, holder: str, now: datetime, duration_s: float) -> bool: ...

    def release(self, holder: str) -> None: ...

    def close(self) -> None: ...


class KubernetesLease:
    """A ``Lease`` (see ``leader``) over a Kubernetes Lease object and the store's fence."""

    def __init__(
        self,
        lease: LeaseObject,
        store: ServiceStore,
        name: str,
        duration_s: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.lease = lease
        self.store = store
        self.name = name
        self.duration_s = duration_s
        self.clock = clock
        self._term: Term | None = None

    @classmethod
    def connect(
        cls,
        store: ServiceStore,
        name: str,
        namespace: str | None,
        duration_s: float,
        *,
        kubeconfig: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> KubernetesLease:
        from gatekeeper.targets.kubernetes.lease import KubernetesLeaseClient

        client = KubernetesLeaseClient.connect(name, namespace, kubeconfig)
        return cls(client, store, name, duration_s, clock)

    def acquire(self, holder: str) -> Term | None:
        now = self.clock.now()
        got = self.lease.try_acquire(holder, now, self.duration_s)
        if got is None:
            self._term = None
            return None
        if got.new_term or self._term is None or self._term.holder != holder:
            self._term = self.store.advance_fence(self.name, holder, now)
        return self._term

    def renew(self, term: Term) -> bool:
        if term != self._term:
            return False
        held = self.lease.renew(term.holder, self.clock.now(), self.duration_s)
        if not held:
            self._term = None
        return held

    def release(self, term: Term) -> None:
        self._term = None
        self.lease.release(term.holder)

    def close(self) -> None:
        self.lease.close()
