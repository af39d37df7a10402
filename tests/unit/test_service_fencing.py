"""Leases and fencing: one leader at a time, each term a higher epoch, and a leader paused
past its lease can never write again once a newer one took over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.domain.fencing import Deposed, Term
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.engine.service.kube_lease import KubernetesLease
from gatekeeper.engine.service.leader import DatabaseLease, LeaderElector
from gatekeeper.engine.service.submission import queued_record
from gatekeeper.store.base import Event
from gatekeeper.store.sql import SqlStore
from tests.support.fakes import T0, FakeClock
from tests.support.service import BACKENDS, FakeRun, database, local_spec, serving


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores on one database: two replicas."""
    a, b = SqlStore.open(db_url), SqlStore.open(db_url)
    yield a, b
    a.close()
    b.close()


def test_one_holder_at_a_time_and_each_takeover_is_a_higher_epoch(stores):
    a, b = stores
    clock = FakeClock(T0)
    lease_a, lease_b = DatabaseLease(a, "ctl", 15, clock), DatabaseLease(b, "ctl", 15, clock)
    term_a = lease_a.acquire("a")
    assert term_a == Term("ctl", "a", 1)
    assert lease_b.acquire("b") is None
    clock.t += timedelta(seconds=10)
    assert lease_a.renew(term_a)
    clock.t += timedelta(seconds=14)
    assert lease_b.acquire("b") is None  # renewed 14s ago: still a's
    assert lease_a.acquire("a") == term_a  # the holder keeps its term
    clock.t += timedelta(seconds=16)
    term_b = lease_b.acquire("b")
    assert term_b == Term("ctl", "b", 2)
    assert not lease_a.renew(term_a)
    lease_b.release(term_b)
    assert lease_a.acquire("a") == Term("ctl", "a", 3)


def test_a_leader_paused_past_its_lease_cannot_write_after_a_takeover(stores):
    a, b = stores
    clock = FakeClock(T0)
    term_a = DatabaseLease(a, "ctl", 15, clock).acquire("a")
    assert term_a is not None
    rid = "shop-production-v2"
    a.submit_release(queued_record(parse_release(local_spec()), "ci-bot", T0))
    fenced_a = a.fenced(term_a, lambda: True)  # a believes it leads: it was paused
    fenced_a.record_event(Event(rid, T0, "note", "written by a"))
    clock.t += timedelta(seconds=20)  # a sleeps past its lease ...
    term_b = DatabaseLease(b, "ctl", 15, clock).acquire("b")
    assert term_b is not None and term_b.epoch == 2  # ... and b takes over
    with pytest.raises(Deposed, match=r"epoch 1\).*the lease is at epoch 2 of b"):
        fenced_a.record_event(Event(rid, clock.now(), "note", "written by a after"))
    with pytest.raises(Deposed):
        fenced_a.set_phase(rid, Phase.PENDING, "a starts it", expected=[Phase.QUEUED])
    b.fenced(term_b, lambda: True).record_event(Event(rid, clock.now(), "note", "written by b"))
    assert [e.message for e in a.events(rid) if e.kind == "note"] == [
        "written by a",
        "written by b",
    ]
    assert a.get_release(rid).phase is Phase.QUEUED


def test_a_fenced_store_refuses_even_reads_once_its_term_is_known_to_be_over(stores):
    a, _ = stores
    term = DatabaseLease(a, "ctl", 15, FakeClock(T0)).acquire("a")
    assert term is not None
    alive = [True]
    view = a.fenced(term, lambda: alive[0])
    assert view.get_release("x") is None
    alive[0] = False
    with pytest.raises(Deposed, match="the term is over"):
        view.get_release("x")
    view.close()
    assert a.get_release("x") is None  # the view's close leaves the store open


def test_a_deposed_controller_stops_and_the_new_leader_finishes_without_repeating_a_step(
    db_url: str,
):
    clock = FakeClock(T0)
    slow = FakeRun(instant=False)
    with serving(db_url, run=slow, clock=clock, holder="a") as first:
        rid = first.submit(local_spec())["release_id"]
        first.lead()
        first.tick()
        deadline = time.monotonic() + 10
        while slow.runs.get(rid) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        clock.t += timedelta(seconds=30)  # a pause past the lease, for everyone's clock
        fast = FakeRun()
        with serving(db_url, run=fast, clock=clock, holder="b") as second:
            second.lead()
            assert second.service.controller.elector.term() == Term("gatekeeper-controller", "b", 2)
            second.tick()
            deadline = time.monotonic() + 10
            while second.call("GET", f"/api/v1/releases/{rid}", "vera").json()["phase"] != (
                "promoted"
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            slow.finish(rid)  # a wakes up and goes on where it was
            first.service.controller.drivers.join(10)
            assert first.service.controller.drivers.count() == 0
            body = second.call("GET", f"/api/v1/releases/{rid}", "vera").json()
            entries = second.call("GET", f"/api/v1/audit?release={rid}", "ada").json()["entries"]
    assert fast.runs == {rid: 1}
    assert slow.deposed == [rid]  # its write after waking up was refused
    assert [s["status"] for s in body["steps"]] == ["done"] * len(body["steps"])
    writers = {(e["detail"].get("controller"), e["detail"].get("epoch")) for e in entries}
    assert ("a", 1) in writers and ("b", 2) in writers
    outcome = [e["detail"] for e in entries if e["action"] == "outcome"]
    assert [(d["controller"], d["phase"]) for d in outcome] == [("b", "promoted")]


class FakeLeaseObject:
    """A Kubernetes Lease as the elector sees it."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.until = T0

    def try_acquire(self, holder: str, now: datetime, duration_s: float):
        from gatekeeper.targets.kubernetes.lease import Acquired

        if self.holder not in (None, holder) and self.until > now:
            return None
        new = self.holder != holder or self.until <= now
        self.holder, self.until = holder, now + timedelta(seconds=duration_s)
        return Acquired(new, 0)

    def renew(self, holder: str, now: datetime, duration_s: float) -> bool:
        if self.holder != holder:
            return False
        self.until = now + timedelta(seconds=duration_s)
        return True

    def release(self, holder: str) -> None:
        if self.holder == holder:
            self.holder = None

    def close(self) -> None:
        pass


def test_a_kubernetes_lease_advances_the_stores_fence_at_each_new_term(stores):
    a, b = stores
    clock = FakeClock(T0)
    obj = FakeLeaseObject()
    lease_a = KubernetesLease(obj, a, "ctl", 15, clock)
    lease_b = KubernetesLease(obj, b, "ctl", 15, clock)
    term_a = lease_a.acquire("a")
    assert term_a == Term("ctl", "a", 1)
    assert lease_a.acquire("a") == term_a and lease_b.acquire("b") is None
    clock.t += timedelta(seconds=20)
    term_b = lease_b.acquire("b")
    assert term_b == Term("ctl", "b", 2)
    assert not lease_a.renew(term_a)
    with pytest.raises(Deposed):
        a.fenced(term_a, lambda: True).release_lease(term_a, clock.now())


def test_the_elector_drops_its_term_when_a_renewal_is_refused(stores):
    a, b = stores
    clock = FakeClock(T0)
    changes: list[Term | None] = []
    elector = LeaderElector(
        DatabaseLease(a, "ctl", 15, clock), duration_s=15, renew_s=5, holder="a",
        on_change=changes.append,
    )  # fmt: skip
    elector.step()
    term = elector.term()
    assert term == Term("ctl", "a", 1) and elector.held(term)
    clock.t += timedelta(seconds=20)
    assert DatabaseLease(b, "ctl", 15, clock).acquire("b") is not None
    elector.step()
    assert elector.term() is None and not elector.held(term)
    assert changes == [term, None]


def test_the_elector_holds_itself_deposed_when_it_could_not_renew_for_the_duration(stores):
    a, _ = stores
    now = [0.0]
    elector = LeaderElector(
        DatabaseLease(a, "ctl", 15, FakeClock(T0)), duration_s=15, renew_s=5, holder="a",
        monotonic=lambda: now[0],
    )  # fmt: skip
    elector.step()
    assert elector.term() is not None
    now[0] = 14.9
    assert elector.term() is not None
    now[0] = 15.0
    assert elector.term() is None  # before anyone else may take the lease over
