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

Command templates run without a shell (``shlex.split``) with these placeholders:
``{port}`` (required; a free loopback port), ``{app}``, ``{version}`` and ``{python}``
(the interpreter running the router).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from gatekeeper.domain.errors import InvalidInput, StepFailed, TemporaryError
from gatekeeper.domain.release import VERSION
from gatekeeper.targets.base import TargetState, VersionRun

from .file_sd import write_file_sd
from .router import write_json_atomic

HOST = "127.0.0.1"
STATE_FILE = "target.json"
ROUTER_STATE_FILE = "router.json"
LOG_DIR = "logs"
STATE_FORMAT = 1
START_ATTEMPTS = 3  # a new port when another process took the free one first
STOP_TIMEOUT_S = 5.0
ADMIN_TIMEOUT_S = 2.0
PLACEHOLDERS = ("{port}", "{app}", "{version}", "{python}")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_VERSION = re.compile(VERSION)
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding `gatekeeper`


# -- command templates ----------------------------------------------------------------------


def fill_command(
    template: str, *, port: int, app: str, version: str, python: str | None = None
) -> list[str]:
    """The argument vector for one version: ``template`` split like a shell would (without
    running one), then ``{port}``, ``{app}``, ``{version}`` and ``{python}`` filled in."""
    if "{port}" not in template:
        raise InvalidInput(
            f"command {template!r} must take {{port}}: the local target chooses each "
            "version's port and passes it in"
        )
    try:
        tokens = shlex.split(template)
    except ValueError as e:
        raise InvalidInput(f"command {template!r} cannot be split into arguments: {e}") from None
    if not tokens:
        raise InvalidInput("command is empty")
    values = {
        "{port}": str(port),
        "{app}": app,
        "{version}": version,
        "{python}": python or sys.executable,
    }
    argv = []
    for token in tokens:
        unknown = [p for p in _PLACEHOLDER.findall(token) if p not in values]
        if unknown:
            raise InvalidInput(
                f"command {template!r}: unknown placeholder {unknown[0]}; "
                f"allowed: {', '.join(PLACEHOLDERS)}"
            )
        for key, value in values.items():
            token = token.replace(key, value)
        argv.append(token)
    return argv


# -- the state file -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRecord:
    """One running version."""

    version: str
    pid: int
    port: int
    command: str  # the template it was started from
    argv: list[str]
    log: str  # file name under the state dir
    started: str | None = None  # the kernel's start time of the pid, to detect pid reuse
    started_at: float = 0.0  # wall clock, for people

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class RouterRecord:
    pid: int
    port: int
    admin_port: int
    started: str | None = None


@dataclass(frozen=True)
class Retiring:
    """A version that stops once ``not_before`` has passed and no traffic goes to it."""

    version: str
    pid: int
    port: int
    not_before: float  # wall clock
    started: str | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass
class LocalState:
    """What the target runs; the content of ``target.json``."""

    app: str
    router: RouterRecord | None = None
    stable: ProcessRecord | None = None
    candidate: ProcessRecord | None = None
    weight: int = 0  # the last weight read from or set on the router
    stable_scale: int = 0
    candidate_scale: int = 0
    retiring: list[Retiring] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # stable versions promoted away from

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = STATE_FORMAT
        return data

    @classmethod
    def from_json(cls, data: object) -> LocalState:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {STATE_FORMAT}")

        def proc(d: Any) -> ProcessRecord | None:
            if d is None:
                return None
            return ProcessRecord(
                version=str(d["version"]),
                pid=int(d["pid"]),
                port=int(d["port"]),
                command=str(d["command"]),
                argv=[str(a) for a in d["argv"]],
                log=str(d["log"]),
                started=None if d.get("started") is None else str(d["started"]),
                started_at=float(d.get("started_at", 0.0)),
            )

        r = data.get("router")
        return cls(
            app=str(data["app"]),
            router=None
            if r is None
            else RouterRecord(
                pid=int(r["pid"]),
                port=int(r["port"]),
                admin_port=int(r["admin_port"]),
                started=None if r.get("started") is None else str(r["started"]),
            ),
            stable=proc(data.get("stable")),
            candidate=proc(data.get("candidate")),
            weight=int(data.get("weight", 0)),
            stable_scale=int(data.get("stable_scale", 0)),
            candidate_scale=int(data.get("candidate_scale", 0)),
            retiring=[
                Retiring(
                    version=str(x["version"]),
                    pid=int(x["pid"]),
                    port=int(x["port"]),
                    not_before=float(x["not_before"]),
                    started=None if x.get("started") is None else str(x["started"]),
                )
                for x in data.get("retiring", [])
            ],
            replaced=[str(v) for v in data.get("replaced", [])],
        )


def save_state(path: Path, state: LocalState) -> None:
    write_json_atomic(path, state.to_json())


def load_state(path: Path) -> LocalState | None:
    """The state in ``path``, or None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return LocalState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput(
            f"local target state {path} is not valid ({e}); stop its processes and remove "
            "the file, or use another state_dir"
        ) from None


# -- processes ------------------------------------------------------------------------------

# Processes this interpreter started, so they are reaped (no zombies) and never reported
# as still running once exited. Kept for the life of the interpreter on purpose: a
# target object dropped without close() (a simulated crash) leaves its processes running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), or None where /proc is not available."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, when ``started`` is given, is still the
    same process (its pid was not reused)."""
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del _CHILDREN[pid]
            return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):
            return False
        if started is not None and len(fields) > 19 and fields[19] != started:
            return False
    return True


def _signal_group(pid: int, sig: int) -> bool:
    """Signal ``pid``'s process group (every version runs in its own session)."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
        return True


def _group_exists(pid: int) -> bool:
    """Whether a live (not zombie) process is left in the process group ``pid``."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            fields = _proc_stat(int(entry.name))
            if fields and len(fields) > 2 and fields[2] == str(pid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(pid: int, started: str | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM ``pid``'s group, SIGKILL it after ``timeout``; returns once it is gone."""
    if pid_alive(pid, started):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
    elif started is not None and process_start_time(pid) not in (None, started):
        return  # the pid belongs to another process now
    # What the leader started (a wrapper's children) goes with it.
    deadline = time.monotonic() + timeout
    while _group_exists(pid) and time.monotonic() < deadline:
        _signal_group(pid, signal.SIGTERM)
        time.sleep(0.05)
    if _group_exists(pid):
        _signal_group(pid, signal.SIGKILL)
    with _CHILDREN_LOCK:
        child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=2.0)


def stop_processes(processes: list[tuple[int, str | None]]) -> None:
    """Stop several processes at once: SIGTERM to all first, then wait for each."""
    for pid, started in processes:
        if pid_alive(pid, started):
            _signal_group(pid, signal.SIGTERM)
    for pid, started in processes:
        stop_process(pid, started)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_status(port: int, path: str, timeout: float = 0.5) -> int | None:
    """The status of ``GET path`` on the loopback ``port``, or None without an answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_PACKAGE_ROOT) not in paths:
        env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), *paths])
    return env


# -- the target -----------------------------------------------------------------------------


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
        self._log = log or (lambda message: None)
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._closed = False
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
            routing = self._router_routing()
            if routing is None:
                weight = s.weight
                details["router"] = "down" if s.router else "not started"
            else:
                weight = int(routing.get("weight", 0))
                if routing.get("candidate") is None:
                    weight = 0
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
            self._check_version(stable.version)
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
                if not self._answers(current):
                    run = stable if current.version == stable.version else None
                    old = current
                    s.stable = self._restart(current, run, "stable")
            else:
                self._log(f"stable changes from {current.version} to {stable.version}")
                old = current
                s.stable = self._start_version(stable, "stable")
            s.stable_scale = 100
            if old is not None:
                self._retire(old, delay=0.0)
            self._save()
            self._apply_routing()
            self._reap()

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        _check_percent(scale_percent, "scale_percent")
        with self._lock:
            self._check_version(candidate.version)
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
                self._retire(current, delay=0.0)
            elif current is None:
                s.candidate = self._start_version(candidate, "candidate")
            elif not self._answers(current):
                s.candidate = self._restart(current, candidate, "candidate")
                self._retire(current, delay=0.0)
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
                if not self._answers(s.candidate):
                    raise StepFailed(
                        f"weight {weight}: candidate {s.candidate.version} "
                        f"(pid {s.candidate.pid}, port {s.candidate.port}) is not answering"
                    )
            self._ensure_router()
            desired = self._desired_routing(weight)
            actual = self._router_get()
            if actual != desired:
                self._router_put(desired)
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
            router = self._ensure_router()
            return f"http://{HOST}:{router.port}/"

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
            if not self._answers(c):
                raise StepFailed(
                    f"promote: candidate {c.version} (pid {c.pid}, port {c.port}) is not answering"
                )
            self._ensure_router()
            old = s.stable
            s.stable, s.candidate = c, None
            s.stable_scale, s.candidate_scale = 100, 0
            if old is not None:
                self._retire(old, delay=scale_down_delay_s)
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
                self._retire(c, delay=0.0)
            self._save()
            if s.stable is not None and not self._answers(s.stable):
                old = s.stable
                s.stable = self._restart(old, None, "stable")
                self._retire(old, delay=0.0)
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

    def close(self) -> None:
        """Release local resources; the router and versions keep running. Pending stops
        of old versions are done by the next target on this state dir."""
        with self._lock:
            self._closed = True
            for t in self._timers:
                t.cancel()
            self._timers.clear()

    def shutdown(self) -> None:
        """Stop the router and every version this state dir knows of, then close."""
        with self._lock:
            self.close()
            s = self._state
            processes = [(r.pid, r.started) for r in (s.router, s.stable, s.candidate) if r]
            processes += [(r.pid, r.started) for r in s.retiring]
            info = _read_router_file(self.state_dir / ROUTER_STATE_FILE)
            if info is not None and isinstance(info.get("pid"), int):
                try:
                    found = RouterRecord(info["pid"], int(info["port"]), int(info["admin_port"]))
                except (KeyError, TypeError, ValueError):
                    found = None
                if found is not None and self._router_answers(found):
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
            if self._router_answers(s.router):
                self.adopted["router"] = s.router.pid
                routing = self._router_routing()
                if routing is not None:
                    s.weight = 0 if routing.get("candidate") is None else int(routing["weight"])
                self._log(f"adopted router pid {s.router.pid} on port {s.router.port}")
            else:
                self._log(f"router pid {s.router.pid} is not answering; it restarts on first use")
        for role, rec in (("stable", s.stable), ("candidate", s.candidate)):
            if rec is None:
                continue
            if self._answers(rec):
                self.adopted[role] = rec.pid
                self._log(f"adopted {role} {rec.version} pid {rec.pid} on port {rec.port}")
            else:
                self._log(f"{role} {rec.version} (pid {rec.pid}) is not running")
        if s.router is not None or s.stable is not None or s.candidate is not None:
            self._save()
        self._reap()

    # -- versions ---------------------------------------------------------------------------

    def _check_version(self, version: str) -> None:
        if not _VERSION.match(version):
            raise InvalidInput(f"version {version!r} does not match {VERSION}")

    def _answers(self, rec: ProcessRecord) -> bool:
        return pid_alive(rec.pid, rec.started) and http_status(rec.port, "/healthz") is not None

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
            offset = log_path.stat().st_size if log_path.exists() else 0
            child = self._spawn(argv, log_path, f"{role} {run.version}")
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
                self._wait_ready(child, port, what, log_path, offset)
            except _PortTaken as e:
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
                started_at=time.time(),
            )
        raise StepFailed(last_error)

    def _spawn(self, argv: list[str], log_path: Path, what: str) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=_child_env(),
                    close_fds=True,
                )
            except OSError as e:
                raise StepFailed(f"{what}: cannot run {shlex.join(argv)}: {e}") from e
        with _CHILDREN_LOCK:
            _CHILDREN[child.pid] = child
        return child

    def _wait_ready(
        self,
        child: subprocess.Popen[bytes],
        port: int,
        what: str,
        log_path: Path,
        offset: int,
    ) -> None:
        """Until ``port`` gives any HTTP answer to GET /healthz; StepFailed otherwise."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = child.poll()
            if code is not None:
                tail = _tail(log_path, offset)
                with _CHILDREN_LOCK:
                    _CHILDREN.pop(child.pid, None)
                message = (
                    f"{what} exited with code {code} before answering on port {port}; "
                    f"log {log_path.name}:\n{tail}"
                )
                if "address already in use" in tail.lower():
                    raise _PortTaken(message)
                raise StepFailed(message)
            if http_status(port, "/healthz") is not None:
                return
            if time.monotonic() >= deadline:
                stop_process(child.pid, None)
                raise StepFailed(
                    f"{what} did not answer on port {port} within {self.start_timeout:g}s; "
                    f"log {log_path.name}:\n{_tail(log_path, offset)}"
                )
            time.sleep(0.05)

    def _retire(self, rec: ProcessRecord, *, delay: float) -> None:
        s = self._state
        if any(r.pid == rec.pid for r in s.retiring):
            return
        s.retiring.append(
            Retiring(
                version=rec.version,
                pid=rec.pid,
                port=rec.port,
                not_before=time.time() + delay,
                started=rec.started,
            )
        )

    def _reap(self) -> None:
        """Stop retiring versions that are due and take no traffic; schedule the others."""
        s = self._state
        if not s.retiring:
            return
        routing = self._router_routing()
        routed = set() if routing is None else {routing.get("stable"), routing.get("candidate")}
        if routing is None and s.router is not None and pid_alive(s.router.pid):
            return  # the router is up but not answering: do not guess where traffic goes
        now = time.time()
        keep: list[Retiring] = []
        for r in s.retiring:
            if r.not_before > now:
                keep.append(r)
                self._schedule(r.not_before - now)
            elif r.address in routed and pid_alive(r.pid, r.started):
                keep.append(r)
                self._log(f"{r.version} (pid {r.pid}) still takes traffic; it stops later")
            else:
                stop_process(r.pid, r.started)
                self._log(f"stopped {r.version} (pid {r.pid})")
        if len(keep) != len(s.retiring):
            s.retiring = keep
            self._save()

    def _schedule(self, delay: float) -> None:
        if self._closed:
            return
        timer = threading.Timer(delay + 0.01, self._on_timer)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()]
        self._timers.append(timer)
        timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._reap()
            except Exception as e:  # a timer thread has no caller to raise to
                self._log(f"stopping an old version failed: {type(e).__name__}: {e}")

    # -- the router -------------------------------------------------------------------------

    def _router_answers(self, rec: RouterRecord) -> bool:
        """The router ``rec`` runs and its admin API answers as that same process."""
        if not pid_alive(rec.pid, rec.started):
            return False
        try:
            status, body = _admin(rec.admin_port, "GET", "/healthz")
            return status == 200 and json.loads(body).get("pid") == rec.pid
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            return False

    def _ensure_router(self) -> RouterRecord:
        s = self._state
        if s.router is not None and self._router_answers(s.router):
            return s.router
        state_file = self.state_dir / ROUTER_STATE_FILE
        info = _read_router_file(state_file)
        if info is not None:  # a router started for this folder but not recorded yet
            try:
                found = RouterRecord(
                    pid=int(info["pid"]),
                    port=int(info["port"]),
                    admin_port=int(info["admin_port"]),
                )
            except (KeyError, TypeError, ValueError):
                found = None
            if found is not None and (s.router is None or found.pid != s.router.pid):
                found = RouterRecord(
                    found.pid, found.port, found.admin_port, process_start_time(found.pid)
                )
                if self._router_answers(found):
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
        argv = [
            self.python,
            "-m",
            "gatekeeper.targets.local.router",
            "--port",
            str(port),
            "--admin-port",
            "0",
            "--state-file",
            str(state_file),
        ]
        log_path = self.state_dir / LOG_DIR / "router.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        child = self._spawn(argv, log_path, "router")
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = child.poll()
            if code is not None:
                with _CHILDREN_LOCK:
                    _CHILDREN.pop(child.pid, None)
                raise StepFailed(
                    f"router (command {shlex.join(argv)}) exited with code {code}; "
                    f"log router.log:\n{_tail(log_path, offset)}"
                )
            info = _read_router_file(state_file)
            if info is not None and info.get("pid") == child.pid:
                rec = RouterRecord(
                    pid=child.pid,
                    port=int(info["port"]),
                    admin_port=int(info["admin_port"]),
                    started=process_start_time(child.pid),
                )
                if self._router_routing(rec) is not None:
                    break
            if time.monotonic() >= deadline:
                stop_process(child.pid, None)
                raise StepFailed(
                    f"router did not start within {self.start_timeout:g}s; "
                    f"log router.log:\n{_tail(log_path, offset)}"
                )
            time.sleep(0.05)
        s.router = rec
        self._save()
        self._log(f"started router pid {rec.pid}: traffic on {HOST}:{rec.port}")
        return rec

    def _router_routing(self, rec: RouterRecord | None = None) -> dict[str, Any] | None:
        """The router's routing, or None when it does not answer."""
        rec = rec or self._state.router
        if rec is None:
            return None
        try:
            status, body = _admin(rec.admin_port, "GET", "/weights")
            data = json.loads(body)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return data if status == 200 and isinstance(data, dict) else None

    def _router_get(self) -> dict[str, Any]:
        routing = self._router_routing()
        if routing is None:
            raise TemporaryError("the router's admin API is not answering")
        return routing

    def _router_put(self, routing: dict[str, Any]) -> None:
        rec = self._state.router
        if rec is None:
            raise StepFailed("the router is not running")
        try:
            status, body = _admin(rec.admin_port, "PUT", "/weights", routing)
        except (OSError, http.client.HTTPException) as e:
            raise TemporaryError(f"the router's admin API is not answering: {e}") from e
        if status != 200:
            raise StepFailed(f"the router refused {routing}: {body.decode(errors='replace')}")

    def _actual_weight(self) -> int:
        routing = self._router_routing()
        if routing is None:
            return self._state.weight
        return 0 if routing.get("candidate") is None else int(routing.get("weight", 0))

    def _desired_routing(self, weight: int) -> dict[str, Any]:
        s = self._state
        candidate = s.candidate.address if s.candidate else None
        return {
            "stable": s.stable.address if s.stable else None,
            "candidate": candidate,
            "weight": weight if candidate else 0,
        }

    def _apply_routing(self) -> None:
        """Point the router at the recorded versions, keeping its current weight."""
        actual = self._router_get()
        s = self._state
        # A candidate keeps the weight the router gives the candidate slot (the same
        # version restarted on a new port); a new candidate, or none, gets 0.
        has_candidate = s.candidate is not None and actual.get("candidate") is not None
        weight = int(actual.get("weight", 0)) if has_candidate else 0
        desired = self._desired_routing(weight)
        if actual != desired:
            self._router_put(desired)
        s.weight = desired["weight"]

    # -- persistence ------------------------------------------------------------------------

    def _endpoints(self) -> list[str]:
        s = self._state
        return [r.address for r in (s.stable, s.candidate) if r is not None]

    def _save(self) -> None:
        save_state(self.state_path, self._state)
        if self.file_sd is not None:
            write_file_sd(self.file_sd, self._endpoints())


class _PortTaken(StepFailed):
    """The version could not listen on the port chosen for it."""


def _check_percent(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"{what} must be an integer from 0 to 100, got {value!r}")


def _read_router_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _admin(port: int, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=ADMIN_TIMEOUT_S)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Connection": "close"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


__all__ = [
    "LocalProcessTarget",
    "LocalState",
    "ProcessRecord",
    "Retiring",
    "RouterRecord",
    "fill_command",
    "load_state",
    "pid_alive",
    "save_state",
    "stop_process",
    "stop_processes",
]
