"""Delayed stops of old versions, judged by an injected clock: no process, no waiting."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from gatekeeper.targets.local.clock import Clock, SystemClock, epoch
from gatekeeper.targets.local.retirement import Retirement
from gatekeeper.targets.local.state import LocalState, ProcessRecord, Retiring

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Processes:
    """Stands in for the OS: which pids run, and which were stopped."""

    def __init__(self, *running: int) -> None:
        self.running = set(running)
        self.stopped: list[int] = []

    def stop(self, pid: int, started: str | None) -> None:
        self.stopped.append(pid)
        self.running.discard(pid)

    def alive(self, pid: int, started: str | None) -> bool:
        return pid in self.running


def record(version: str, pid: int, port: int) -> ProcessRecord:
    return ProcessRecord(
        version=version, pid=pid, port=port, command="svc {port}", argv=["svc"], log="l"
    )


OLD = record("v1", 101, 9001)


def retirement(
    clock: Clock, procs: Processes, on_due: threading.Event | None = None
) -> tuple[Retirement, list[str]]:
    lines: list[str] = []
    due = on_due or threading.Event()
    r = Retirement(clock, lines.append, due.set, stop=procs.stop, alive=procs.alive)
    return r, lines


def test_a_retired_version_stops_at_its_time_by_the_clock_not_before() -> None:
    clock, procs, state = FakeClock(), Processes(101), LocalState(app="shop")
    r, lines = retirement(clock, procs)
    r.retire(state, OLD, delay=600)
    assert state.retiring == [
        Retiring(version="v1", pid=101, port=9001, not_before=T0.timestamp() + 600)
    ]

    clock.sleep(599)
    assert not r.reap(state, routed=set())
    assert procs.stopped == [] and len(state.retiring) == 1

    clock.sleep(1)
    assert r.reap(state, routed=set())
    assert procs.stopped == [101] and state.retiring == []
    assert lines == ["stopped v1 (pid 101)"]
    r.close()


def test_a_due_version_that_still_takes_traffic_is_kept() -> None:
    clock, procs, state = FakeClock(), Processes(101), LocalState(app="shop")
    r, lines = retirement(clock, procs)
    r.retire(state, OLD, delay=0)
    assert not r.reap(state, routed={"127.0.0.1:9000", OLD.address})
    assert procs.stopped == [] and len(state.retiring) == 1
    assert lines == ["v1 (pid 101) still takes traffic; it stops later"]
    assert r.reap(state, routed={"127.0.0.1:9000"})  # the router moved on
    assert procs.stopped == [101]


def test_a_due_version_routed_but_already_dead_is_cleared() -> None:
    clock, procs, state = FakeClock(), Processes(), LocalState(app="shop")
    r, _ = retirement(clock, procs)
    r.retire(state, OLD, delay=0)
    assert r.reap(state, routed={OLD.address})
    assert state.retiring == [] and procs.stopped == [101]


def test_retiring_the_same_process_twice_keeps_its_first_time() -> None:
    clock, procs, state = FakeClock(), Processes(101), LocalState(app="shop")
    r, _ = retirement(clock, procs)
    r.retire(state, OLD, delay=5)
    clock.sleep(100)
    r.retire(state, OLD, delay=5)
    assert [x.not_before for x in state.retiring] == [T0.timestamp() + 5]


def test_a_stop_not_due_yet_wakes_the_target_later() -> None:
    clock, procs, state = FakeClock(), Processes(101), LocalState(app="shop")
    woke = threading.Event()
    r, _ = retirement(clock, procs, woke)
    r.retire(state, OLD, delay=0.05)
    r.reap(state, routed=set())
    assert woke.wait(5.0)
    r.close()


def test_a_closed_retirement_schedules_nothing() -> None:
    clock, procs, state = FakeClock(), Processes(101), LocalState(app="shop")
    woke = threading.Event()
    r, _ = retirement(clock, procs, woke)
    r.retire(state, OLD, delay=0.05)
    r.reap(state, routed=set())
    r.close()  # cancels the pending timer
    r.schedule(0.0)
    assert r.closed
    assert not woke.wait(0.3)


def test_the_system_clock_is_timezone_aware() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert abs(epoch(SystemClock()) - now.timestamp()) < 5
