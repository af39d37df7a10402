"""Retirement of old versions: a version taken out of service stops after a delay, and only
once the router sends it no traffic.

Retiring versions are listed in the state file, so a stop still pending when the
controller goes away is done by the next target on the same state dir.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .clock import Clock, epoch
from .processes import pid_alive, stop_process
from .state import LocalState, ProcessRecord, Retiring


class Retirement:
    """Delayed stops of old versions. Not thread-safe by itself: the target calls it under
    its lock, and ``on_due`` (run on a timer thread) takes that lock."""

    def __init__(
        self,
        clock: Clock,
        log: Callable[[str], None],
        on_due: Callable[[], None],
        *,
        stop: Callable[[int, str | None], None] = stop_process,
        alive: Callable[[int, str | None], bool] = pid_alive,
    ) -> None:
        self._clock = clock
        self._log = log
        self._on_due = on_due
        self._stop = stop
        self._alive = alive
        self._timers: list[threading.Timer] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def retire(self, state: LocalState, rec: ProcessRecord, *, delay: float) -> None:
        """List ``rec`` to stop ``delay`` seconds from now (once only)."""
        if any(r.pid == rec.pid for r in state.retiring):
            return
        state.retiring.append(
            Retiring(
                version=rec.version,
                pid=rec.pid,
                port=rec.port,
                not_before=epoch(self._clock) + delay,
                started=rec.started,
            )
        )

    def reap(self, state: LocalState, routed: set[str | None]) -> bool:
        """Stop the retiring versions that are due and whose address is not in ``routed``;
        schedule another look for those not due yet. True when ``state.retiring`` changed
        (the caller saves it)."""
        now = epoch(self._clock)
        keep: list[Retiring] = []
        for r in state.retiring:
            if r.not_before > now:
                keep.append(r)
                self.schedule(r.not_before - now)
            elif r.address in routed and self._alive(r.pid, r.started):
                keep.append(r)
                self._log(f"{r.version} (pid {r.pid}) still takes traffic; it stops later")
            else:
                self._stop(r.pid, r.started)
                self._log(f"stopped {r.version} (pid {r.pid})")
        if len(keep) == len(state.retiring):
            return False
        state.retiring = keep
        return True

    def schedule(self, delay: float) -> None:
        """Call ``on_due`` in ``delay`` seconds, unless closed by then.

        A real timer, not the clock: it only wakes the target to look again, and the
        look itself judges what is due by the clock. A test with a clock of its own
        reaps by calling a step once it has moved the clock on."""
        if self._closed:
            return
        timer = threading.Timer(delay + 0.01, self._on_due)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()]
        self._timers.append(timer)
        timer.start()

    def close(self) -> None:
        """Cancel every pending timer; the stops stay listed in the state file."""
        self._closed = True
        for t in self._timers:
            t.cancel()
        self._timers.clear()
