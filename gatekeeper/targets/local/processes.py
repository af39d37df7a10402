"""Processes: start a version's process, wait until it answers, find it again, stop it.

Every version (and the router) runs in its own session, so it outlives the controller
and its process group holds whatever it starts. A process recorded in the state file is
known again by its pid and the kernel's start time of that pid, so a reused pid is never
taken for it. Processes this interpreter started are reaped here (no zombies).

Waits on processes (readiness, stopping) use ``time.monotonic`` and ``time.sleep``, not
the target's clock: they wait for real operating-system processes, which run in real
time whatever a test's clock says, and a clock whose ``sleep`` returns at once would
turn each of these polls into a busy loop.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from gatekeeper.domain.errors import StepFailed

from .clock import Clock
from .state import HOST, ProcessRecord

STOP_TIMEOUT_S = 5.0
_POLL_S = 0.05
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding `gatekeeper`

# Processes this interpreter started, so they are reaped (no zombies) and never reported
# as still running once exited. Kept for the life of the interpreter on purpose: a
# target object dropped without close() (a simulated crash) leaves its processes running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


class PortTaken(StepFailed):
    """The version could not listen on the port chosen for it."""


# -- finding a process again ------------------------------------------------------------


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


def answers(rec: ProcessRecord) -> bool:
    """The version in ``rec`` is the same process still and answers on its port: what
    makes a process found in the state file adoptable."""
    return pid_alive(rec.pid, rec.started) and http_status(rec.port, "/healthz") is not None


# -- starting ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def log_size(path: Path) -> int:
    """Where the next run's output starts in the log ``path``."""
    return path.stat().st_size if path.exists() else 0


def tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    """The last ``lines`` of the log ``path`` written after ``offset``."""
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


def spawn(argv: list[str], log_path: Path, what: str, clock: Clock) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        stamp = clock.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S")
        log.write(f"--- {stamp} {shlex.join(argv)}\n".encode())
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


def forget(child: subprocess.Popen[bytes]) -> None:
    """``child`` has exited and was waited for; stop tracking it."""
    with _CHILDREN_LOCK:
        _CHILDREN.pop(child.pid, None)


def wait_ready(
    child: subprocess.Popen[bytes],
    port: int,
    what: str,
    log_path: Path,
    offset: int,
    timeout: float,
) -> None:
    """Until ``port`` gives any HTTP answer to GET /healthz; StepFailed otherwise (PortTaken
    when the process says its port is in use, so the caller can try another)."""
    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        if code is not None:
            text = tail(log_path, offset)
            forget(child)
            message = (
                f"{what} exited with code {code} before answering on port {port}; "
                f"log {log_path.name}:\n{text}"
            )
            if "address already in use" in text.lower():
                raise PortTaken(message)
            raise StepFailed(message)
        if http_status(port, "/healthz") is not None:
            return
        if time.monotonic() >= deadline:
            stop_process(child.pid, None)
            raise StepFailed(
                f"{what} did not answer on port {port} within {timeout:g}s; "
                f"log {log_path.name}:\n{tail(log_path, offset)}"
            )
        time.sleep(_POLL_S)


# -- stopping ---------------------------------------------------------------------------


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
        time.sleep(_POLL_S)
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
