"""Child processes of the bed: each in its own process group, logged to a file, always reaped."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Ports are picked below the kernel's ephemeral range: a port from bind(0) comes from that
# range, where every outgoing connection made before the component binds it (the API server's
# to etcd, kube-controller-manager's to the API server...) may take it first ("address already
# in use"). Below it, only another explicit bind can.
LOW_PORT = 20000


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range when there is room below it."""
    top = _ephemeral_start()
    if top - LOW_PORT >= 1000:
        for _ in range(50):
            candidate = random.randrange(LOW_PORT, top)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 12, width: int = 300) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


class ManagedProcess:
    """One long-running component; stop() ends its whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe_failure(self, what: str) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        tail = log_tail(self.log_path)
        return f"{self.name} {what} ({state}); last lines of {self.log_path}:\n{tail}"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(self.describe_failure(f"died before it was {what}"))
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
                pass
            time.sleep(0.2)
        raise RuntimeError(self.describe_failure(f"was not {what} within {timeout:.0f}s"))

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Anything the component left in its group goes too.
        _signal_group(self.proc.pid, signal.SIGKILL)
        self._log.close()


def _die_with_parent() -> None:
    """Linux: the component gets SIGKILL if the test process dies without tearing down."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
