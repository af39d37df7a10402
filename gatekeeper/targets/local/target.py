"""LocalProcessTarget: each version runs as a local process behind the weighted router.

The router (``router.py``) and every version run as their own process groups, so they
outlive the controller. The target keeps what it runs in ``<state_dir>/target.json``
(replaced atomically); a new ``LocalProcessTarget`` on the same folder adopts the
running router and versions (their pids alive, their ports answering) instead of
starting them again.

Scale: each version is one process. ``scale_stable`` and ``deploy_candidate``'s
``scale_percent`` are recorded and reported by ``state()``; traffic shares are set with
``set_weight``, which is how the local target models a rolling batch.

Changes of which process serves as stable or candidate are written to the state file
before the router is told, and processes are stopped only once the router no longer
sends them traffic. So a controller killed at any moment leaves a state file that the
next one can finish: it re-applies the routing and stops what is due to stop. The
traffic weight itself is always read from the router, never replayed from the file.

This module orchestrates; the parts live beside it: ``commands`` (command templates),
``state`` (the state file), ``processes`` (start, readiness, stop, adoption),
``router_client`` (the router's admin API), ``retirement`` (delayed stops) and
``clock`` (wall-clock time, injectable).
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from gatekeeper.domain.errors import InvalidInput, StepFailed
from gatekeeper.targets.base import Health, TargetState, VersionRun

from . import router_client as router
from .clock import Clock, SystemClock, epoch
from .commands import check_version, fill_command
from .file_sd import write_file_sd
from .processes import (
    PortTaken,
    answers,
    free_port,
    http_status,
    log_size,
    pid_alive,
    process_start_time,
    spawn,
    stop_process,
    stop_processes,
    tail,
    wait_ready,
)
from .retirement import Retirement
from .router_client import ROUTER_STATE_FILE, Routing
from .state import (
    HOST,
    STATE_FILE,
    LocalState,
    ProcessRecord,
    Retiring,
    RouterRecord,
    load_state,
    save_state,
)

LOG_DIR = "logs"
START_ATTEMPTS = 3  # a new port when another process took the free one first


class LocalProcessTarget:
    """The Target protocol over local processes and the weighted router on loopback."""

    name = "local"

    def __init__(
        self,
        app: str,
        state_dir: Path,
        *,
        router_port: int = 0,
        python: str = sys.executable,
        log: Callable[[str], None] | None = None,
        start_timeout: float = 20.0,
        file_sd: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= router_port <= 65535:
            raise InvalidInput(f"router_port must be 0..65535, got {router_port}")
        if start_timeout <= 0:
            raise InvalidInput(f"start_timeout must be above 0, got {start_timeout}")
        self.app = app
        self.state_dir = Path(state_dir)
        self.router_port = router_port
        self.python = python
        self.start_timeout = start_timeout
        self.file_sd = file_sd
        self.clock: Clock = clock or SystemClock()
        self._log = log or (lambda message: None)
        self._lock = threading.RLock()
        self._retirement = Retirement(self.clock, self._log, self._on_timer)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / LOG_DIR).mkdir(exist_ok=True)
        self.state_path = self.state_dir / STATE_FILE
        loaded = load_state(self.state_path)
        if loaded is not None and loaded.app != app:
            raise InvalidInput(
                f"state dir {self.state_dir} belongs to app {loaded.app!r}, not {app!r}"
            )
        self._state = loaded or LocalState(app=app)
        self.adopted: dict[str, int] = {}  # what a new instance found running: name -> pid
        with self._lock:
            self._adopt()

    # -- Target protocol -------------------------------------------------------------------

    def state(self) -> TargetState:
        with self._lock:
            s = self._state
            details: dict[str, str] = {"state_dir": str(self.state_dir)}
            routing = router.get_routing(s.router)
            if routing is None:
                weight = s.weight
                details["router"] = "down" if s.router else "not started"
            else:
                weight = router.routed_weight(routing)
                details["router"] = "up"
                details["router_stable"] = str(routing.get("stable"))
                details["router_candidate"] = str(routing.get("candidate"))
                if weight != s.weight:
                    s.weight = weight
                    self._save()
            if s.router:
                details["traffic_url"] = f"http://{HOST}:{s.router.port}/"
                details["router_pid"] = str(s.router.pid)
            candidate_ready = False
            for role, rec in (("stable", s.stable), ("candidate", s.candidate)):
                if rec is None:
                    continue
                alive = pid_alive(rec.pid, rec.started)
                answering = alive and http_status(rec.port, "/healthz") is not None
                details[f"{role}_pid"] = str(rec.pid)
                details[f"{role}_address"] = rec.address
                details[f"{role}_running"] = "yes" if answering else "no"
                if role == "candidate":
                    candidate_ready = answering
            return TargetState(
                stable_version=s.stable.version if s.stable else None,
                candidate_version=s.candidate.version if s.candidate else None,
                candidate_weight=weight,
                candidate_scale_percent=s.candidate_scale if s.candidate else 0,
                stable_scale_percent=s.stable_scale if s.stable else 0,
                candidate_ready=candidate_ready,
                details=details,
            )

    def ensure_stable(self, stable: VersionRun) -> None:
        with self._lock:
            check_version(stable.version)
            s = self._state
            current = s.stable
            if s.candidate is not None and s.candidate.version == stable.version:
                raise InvalidInput(
                    f"stable {stable.version} is the version deployed as candidate; "
                    "promote it or roll it back first"
                )
            self._ensure_router()
            old: ProcessRecord | None = None
            if current is None:
                s.stable = self._start_version(stable, "stable")
            elif current.version == stable.version or stable.version in s.replaced:
                if current.version != stable.version:
                    self._log(
                        f"{stable.version} was promoted away from already; "
                        f"{current.version} stays stable"
                    )
                if not answers(current):
                    run = stable if current.version == stable.version else None
                    old = current
                    s.stable = self._restart(current, run, "stable")
            else:
                self._log(f"stable changes from {current.version} to {stable.version}")
                old = current
                s.stable = self._start_version(stable, "stable")
            s.stable_scale = 100
            if old is not None:
                self._retirement.retire(s, old, delay=0.0)
            self._save()
            self._apply_routing()
            self._reap()

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        _check_percent(scale_percent, "scale_percent")
        with self._lock:
            check_version(candidate.version)
            s = self._state
            if s.stable is not None and s.stable.version == candidate.version:
                raise InvalidInput(f"candidate {candidate.version} is the stable version already")
            self._ensure_router()
            current = s.candidate
            if current is not None and current.version != candidate.version:
                weight = self._actual_weight()
                if weight > 0:
                    raise StepFailed(
                        f"candidate {current.version} still takes {weight}% of traffic; "
                        f"roll it back before deploying {candidate.version}"
                    )
                self._log(f"candidate {current.version} is replaced by {candidate.version}")
                s.candidate = self._start_version(candidate, "candidate")
                self._retirement.retire(s, current, delay=0.0)
            elif current is None:
                s.candidate = self._start_version(candidate, "candidate")
            elif not answers(current):
                s.candidate = self._restart(current, candidate, "candidate")
                self._retirement.retire(s, current, delay=0.0)
            s.candidate_scale = scale_percent
            self._save()
            self._apply_routing()
            self._reap()

    def set_weight(self, weight: int) -> None:
        _check_percent(weight, "weight")
        with self._lock:
            s = self._state
            if weight > 0:
                if s.candidate is None:
                    raise StepFailed(f"weight {weight}: no candidate is deployed")
                if not answers(s.candidate):
                    raise StepFailed(
                        f"weight {weight}: candidate {s.candidate.version} "
                        f"(pid {s.candidate.pid}, port {s.candidate.port}) is not answering"
                    )
            self._ensure_router()
            desired = self._desired_routing(weight)
            actual = router.require_routing(s.router)
            if actual != desired:
                router.put_routing(s.router, desired)
                self._log(f"weight: candidate {actual.get('weight')}% -> {weight}%")
            if s.weight != weight:
                s.weight = weight
                self._save()

    def scale_stable(self, percent: int) -> None:
        """Recorded only: stable is one process; its traffic share follows the weight."""
        _check_percent(percent, "percent")
        with self._lock:
            if self._state.stable is None:
                raise StepFailed("scale stable: no stable version runs")
            if self._state.stable_scale != percent:
                self._state.stable_scale = percent
                self._save()

    def preview_url(self) -> str:
        with self._lock:
            c = self._state.candidate
            if c is None:
                raise StepFailed("preview: no candidate is deployed")
            return f"http://{HOST}:{c.port}/"

    def traffic_url(self) -> str:
        with self._lock:
            rec = self._ensure_router()
            return f"http://{HOST}:{rec.port}/"

    def promote(self, scale_down_delay_s: float) -> None:
        if scale_down_delay_s < 0:
            raise InvalidInput(f"scale_down_delay must not be negative, got {scale_down_delay_s}")
        with self._lock:
            s = self._state
            c = s.candidate
            if c is None:  # promoted already; make sure the router knows (a crash in between)
                if s.stable is not None:
                    self._ensure_router()
                    self._apply_routing()
                    self._reap()
                return
            if not answers(c):
                raise StepFailed(
                    f"promote: candidate {c.version} (pid {c.pid}, port {c.port}) is not answering"
                )
            self._ensure_router()
            old = s.stable
            s.stable, s.candidate = c, None
            s.stable_scale, s.candidate_scale = 100, 0
            if old is not None:
                self._retirement.retire(s, old, delay=scale_down_delay_s)
                s.replaced = [*[v for v in s.replaced if v != old.version], old.version][-20:]
            self._save()  # before the router: a crash in between is finished by the next run
            self._apply_routing()
            s.weight = 0
            self._save()
            self._log(
                f"promoted {c.version}"
                + (f"; {old.version} stops in {scale_down_delay_s:g}s" if old else "")
            )
            self._reap()

    def rollback(self) -> None:
        with self._lock:
            s = self._state
            c = s.candidate
            s.candidate, s.candidate_scale = None, 0
            s.stable_scale = 100 if s.stable else 0
            if c is not None:
                self._retirement.retire(s, c, delay=0.0)
            self._save()
            if s.stable is not None and not answers(s.stable):
                old = s.stable
                s.stable = self._restart(old, None, "stable")
                self._retirement.retire(s, old, delay=0.0)
                self._save()
            if s.router is not None or s.stable is not None:
                self._ensure_router()
                self._apply_routing()
            s.weight = 0
            self._save()
            self._reap()
            if c is not None:
                self._log(f"rolled back: candidate {c.version} stopped")

    def metrics_endpoints(self, version: str | None = None) -> list[str]:
        with self._lock:
            s = self._state
            return [
                r.address
                for r in (s.stable, s.candidate)
                if r is not None and (version is None or r.version == version)
            ]

    def health(self, version: str) -> Health:
        """A process of ``version`` that has exited (or been replaced under its pid) is a
        P0 signal: the router would send its share of traffic to nothing."""
        with self._lock:
            s = self._state
            problems = []
            for role, rec in (("stable", s.stable), ("candidate", s.candidate)):
                if rec is None or rec.version != version or pid_alive(rec.pid, rec.started):
                    continue
                log = self.state_dir / rec.log
                last = tail(log, max(0, log_size(log) - 4096), lines=1).strip()
                problems.append(
                    f"{role} {self.app} {version}: process {rec.pid} on {rec.address} "
                    "is not running" + (f" (last log line: {last[-200:]})" if last else "")
                )
            return Health(tuple(problems))

    def close(self) -> None:
        """Release local resources; the router and versions keep running. Pending stops
        of old versions are done by the next target on this state dir."""
        with self._lock:
            self._retirement.close()

    def shutdown(self) -> None:
        """Stop the router and every version this state dir knows of, then close."""
        with self._lock:
            self.close()
            s = self._state
            processes = [(r.pid, r.started) for r in (s.router, s.stable, s.candidate) if r]
            processes += [(r.pid, r.started) for r in s.retiring]
            found = router.router_in_file(self.state_dir / ROUTER_STATE_FILE)
            if found is not None and router.router_answers(found):
                processes.append((found.pid, None))  # started but never recorded
            stop_processes(processes)
            self._state = LocalState(app=self.app)
            self._save()
            self._log("local target shut down: router and versions stopped")

    def __enter__(self) -> LocalProcessTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- adoption ---------------------------------------------------------------------------

    def _adopt(self) -> None:
        s = self._state
        if s.router is not None:
            if router.router_answers(s.router):
                self.adopted["router"] = s.router.pid
                routing = router.get_routing(s.router)
                if routing is not None:
                    s.weight = router.routed_weight(routing)
                self._log(f"adopted router pid {s.router.pid} on port {s.router.port}")
            else:
                self._log(f"router pid {s.router.pid} is not answering; it restarts on first use")
        for role, rec in (("stable", s.stable), ("candidate", s.candidate)):
            if rec is None:
                continue
            if answers(rec):
                self.adopted[role] = rec.pid
                self._log(f"adopted {role} {rec.version} pid {rec.pid} on port {rec.port}")
            else:
                self._log(f"{role} {rec.version} (pid {rec.pid}) is not running")
        if s.router is not None or s.stable is not None or s.candidate is not None:
            self._save()
        self._reap()

    # -- versions ---------------------------------------------------------------------------

    def _restart(self, rec: ProcessRecord, run: VersionRun | None, role: str) -> ProcessRecord:
        self._log(f"{role} {rec.version} (pid {rec.pid}) is not answering; starting it again")
        return self._start_version(run or VersionRun(rec.version, command=rec.command), role)

    def _start_version(self, run: VersionRun, role: str) -> ProcessRecord:
        if not run.command:
            raise InvalidInput(
                f"{role} {run.version}: the local target runs each version from a command"
            )
        log_name = f"{LOG_DIR}/{run.version}.log"
        log_path = self.state_dir / log_name
        last_error = ""
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            argv = fill_command(
                run.command, port=port, app=self.app, version=run.version, python=self.python
            )
            offset = log_size(log_path)
            child = spawn(argv, log_path, f"{role} {run.version}", self.clock)
            # Until the caller records it, the new process is listed to be stopped: a
            # controller killed while it starts leaves nothing the next one does not know.
            pending = Retiring(
                version=run.version,
                pid=child.pid,
                port=port,
                not_before=0.0,
                started=process_start_time(child.pid),
            )
            self._state.retiring.append(pending)
            self._save()
            what = f"{role} {run.version} (command {shlex.join(argv)})"
            try:
                wait_ready(child, port, what, log_path, offset, self.start_timeout)
            except PortTaken as e:
                last_error = str(e)
                self._log(f"{what}: port {port} was taken; trying another ({attempt})")
                continue
            finally:
                if not pid_alive(child.pid):
                    self._state.retiring.remove(pending)
                    self._save()
            self._state.retiring.remove(pending)  # saved with the caller's record of it
            self._log(f"started {role} {run.version} pid {child.pid} on port {port}")
            return ProcessRecord(
                version=run.version,
                pid=child.pid,
                port=port,
                command=run.command,
                argv=argv,
                log=log_name,
                started=process_start_time(child.pid),
                started_at=epoch(self.clock),
            )
        raise StepFailed(last_error)

    # -- retirement -------------------------------------------------------------------------

    def _reap(self) -> None:
        """Stop retiring versions that are due and take no traffic; schedule the others."""
        s = self._state
        if not s.retiring:
            return
        routing = router.get_routing(s.router)
        if routing is None and s.router is not None and pid_alive(s.router.pid):
            return  # the router is up but not answering: do not guess where traffic goes
        routed = set() if routing is None else {routing.get("stable"), routing.get("candidate")}
        if self._retirement.reap(s, routed):
            self._save()

    def _on_timer(self) -> None:
        with self._lock:
            if self._retirement.closed:
                return
            try:
                self._reap()
            except Exception as e:  # a timer thread has no caller to raise to
                self._log(f"stopping an old version failed: {type(e).__name__}: {e}")

    # -- the router -------------------------------------------------------------------------

    def _ensure_router(self) -> RouterRecord:
        s = self._state
        if s.router is not None and router.router_answers(s.router):
            return s.router
        state_file = self.state_dir / ROUTER_STATE_FILE
        found = router.router_in_file(state_file)
        # A router started for this folder but not recorded yet.
        if found is not None and (s.router is None or found.pid != s.router.pid):
            found = found.model_copy(update={"started": process_start_time(found.pid)})
            if router.router_answers(found):
                if s.router is not None and pid_alive(s.router.pid, s.router.started):
                    stop_process(s.router.pid, s.router.started)
                s.router = found
                self._save()
                self.adopted["router"] = found.pid
                self._log(f"adopted router pid {found.pid} on port {found.port}")
                return found
        port = self.router_port
        if s.router is not None:
            port = s.router.port
            if pid_alive(s.router.pid, s.router.started):
                self._log(f"router pid {s.router.pid} is not answering; restarting it")
                stop_process(s.router.pid, s.router.started)
        rec = router.start_router(
            python=self.python,
            port=port,
            state_file=state_file,
            log_path=self.state_dir / LOG_DIR / "router.log",
            timeout=self.start_timeout,
            clock=self.clock,
        )
        s.router = rec
        self._save()
        self._log(f"started router pid {rec.pid}: traffic on {HOST}:{rec.port}")
        return rec

    def _actual_weight(self) -> int:
        routing = router.get_routing(self._state.router)
        return self._state.weight if routing is None else router.routed_weight(routing)

    def _desired_routing(self, weight: int) -> Routing:
        s = self._state
        candidate = s.candidate.address if s.candidate else None
        return {
            "stable": s.stable.address if s.stable else None,
            "candidate": candidate,
            "weight": weight if candidate else 0,
        }

    def _apply_routing(self) -> None:
        """Point the router at the recorded versions, keeping its current weight."""
        s = self._state
        actual = router.require_routing(s.router)
        # A candidate keeps the weight the router gives the candidate slot (the same
        # version restarted on a new port); a new candidate, or none, gets 0.
        has_candidate = s.candidate is not None and actual.get("candidate") is not None
        weight = int(actual.get("weight", 0)) if has_candidate else 0
        desired = self._desired_routing(weight)
        if actual != desired:
            router.put_routing(s.router, desired)
        s.weight = desired["weight"]

    # -- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        save_state(self.state_path, self._state)
        if self.file_sd is not None:
            write_file_sd(self.file_sd, self.metrics_endpoints())


def _check_percent(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"{what} must be an integer from 0 to 100, got {value!r}")


# The names this module held before it was split; kept so imports of them still work.
__all__ = [
    "LocalProcessTarget",
    "LocalState",
    "ProcessRecord",
    "Retiring",
    "RouterRecord",
    "fill_command",
    "free_port",
    "load_state",
    "pid_alive",
    "save_state",
    "stop_process",
    "stop_processes",
]
