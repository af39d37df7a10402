"""Router client: the weighted router's admin API on loopback, its state file, and its start.

The router (``router.py``) runs as its own process. Routing goes over its admin API as
``{"stable": "127.0.0.1:P1" | null, "candidate": "127.0.0.1:P2" | null, "weight": N}``;
the router writes its pid and ports to its own state file, which is how a router started
but never recorded in the target's state file is found again.
"""

from __future__ import annotations

import http.client
import json
import shlex
import time
from pathlib import Path
from typing import Any

from gatekeeper.domain.errors import StepFailed, TemporaryError

from .clock import Clock
from .processes import forget, log_size, pid_alive, process_start_time, spawn, stop_process, tail
from .state import HOST, RouterRecord

ROUTER_STATE_FILE = "router.json"
ADMIN_TIMEOUT_S = 2.0
_POLL_S = 0.05

Routing = dict[str, Any]  # as the admin API reads and writes it


def admin_request(
    port: int, method: str, path: str, body: object | None = None
) -> tuple[int, bytes]:
    """One request to the admin API on ``port``: its status and body."""
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


def router_answers(rec: RouterRecord) -> bool:
    """The router ``rec`` runs and its admin API answers as that same process."""
    if not pid_alive(rec.pid, rec.started):
        return False
    try:
        status, body = admin_request(rec.admin_port, "GET", "/healthz")
        return status == 200 and json.loads(body).get("pid") == rec.pid
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return False


def get_routing(rec: RouterRecord | None) -> Routing | None:
    """The routing of the router ``rec``, or None when there is none or it does not answer."""
    if rec is None:
        return None
    try:
        status, body = admin_request(rec.admin_port, "GET", "/weights")
        data = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return data if status == 200 and isinstance(data, dict) else None


def require_routing(rec: RouterRecord | None) -> Routing:
    """Like ``get_routing``, but a router that does not answer is a temporary error."""
    routing = get_routing(rec)
    if routing is None:
        raise TemporaryError("the router's admin API is not answering")
    return routing


def put_routing(rec: RouterRecord | None, routing: Routing) -> None:
    """Replace the routing of the router ``rec``."""
    if rec is None:
        raise StepFailed("the router is not running")
    try:
        status, body = admin_request(rec.admin_port, "PUT", "/weights", routing)
    except (OSError, http.client.HTTPException) as e:
        raise TemporaryError(f"the router's admin API is not answering: {e}") from e
    if status != 200:
        raise StepFailed(f"the router refused {routing}: {body.decode(errors='replace')}")


def routed_weight(routing: Routing) -> int:
    """The candidate's share in ``routing``: 0 when there is no candidate."""
    return 0 if routing.get("candidate") is None else int(routing.get("weight", 0))


def read_router_file(path: Path) -> dict[str, Any] | None:
    """The router's own state file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def router_in_file(path: Path) -> RouterRecord | None:
    """The router that last wrote its state file ``path`` (without its start time), if the
    file names one."""
    info = read_router_file(path)
    if info is None:
        return None
    try:  # a pydantic ValidationError is a ValueError
        return RouterRecord(
            pid=int(info["pid"]), port=int(info["port"]), admin_port=int(info["admin_port"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def start_router(
    *, python: str, port: int, state_file: Path, log_path: Path, timeout: float, clock: Clock
) -> RouterRecord:
    """Start a router listening on ``port`` (0: any free one); returns once its admin API
    answers. StepFailed when it exits or does not answer within ``timeout`` seconds."""
    argv = [
        python,
        "-m",
        "gatekeeper.targets.local.router",
        "--port",
        str(port),
        "--admin-port",
        "0",
        "--state-file",
        str(state_file),
    ]
    offset = log_size(log_path)
    child = spawn(argv, log_path, "router", clock)
    # A real process starting: waited for in real time (see processes.py).
    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        if code is not None:
            forget(child)
            raise StepFailed(
                f"router (command {shlex.join(argv)}) exited with code {code}; "
                f"log {log_path.name}:\n{tail(log_path, offset)}"
            )
        info = read_router_file(state_file)
        if info is not None and info.get("pid") == child.pid:
            rec = RouterRecord(
                pid=child.pid,
                port=int(info["port"]),
                admin_port=int(info["admin_port"]),
                started=process_start_time(child.pid),
            )
            if get_routing(rec) is not None:
                return rec
        if time.monotonic() >= deadline:
            stop_process(child.pid, None)
            raise StepFailed(
                f"router did not start within {timeout:g}s; "
                f"log {log_path.name}:\n{tail(log_path, offset)}"
            )
        time.sleep(_POLL_S)
