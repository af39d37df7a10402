"""The weighted router: a loopback reverse proxy splitting traffic between stable and candidate.

    python -m gatekeeper.targets.local.router --port P --admin-port A --state-file F

It runs as its own process so traffic keeps flowing when the controller dies. Each
request goes to stable or candidate by smooth weighted round robin, so the shares are
exact over small counts (weight 5 sends exactly 5 of every 100 requests to the
candidate). Responses carry ``X-Gatekeeper-Backend: stable|candidate``. A backend that
does not accept a connection within a second answers 502, never a hang.

Admin API (loopback, on the admin port):
    GET /weights   {"stable": "127.0.0.1:P1", "candidate": "127.0.0.1:P2" | null, "weight": 25}
    PUT /weights   the same JSON (keys left out keep their value); changed atomically
    GET /stats     requests answered per backend since start
    GET /healthz   200

The state file holds the router's pid, its ports and the routing; it is rewritten
atomically after every change and read at start, so a restarted router routes as before.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

STABLE = "stable"
CANDIDATE = "candidate"
BACKEND_HEADER = "X-Gatekeeper-Backend"
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 30.0
MAX_BODY = 64 * 1024 * 1024

# Headers that belong to one connection and are not forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


# Response headers the router writes itself.
REPLACED = frozenset({"content-length", "date", "server", BACKEND_HEADER.lower()})


class RoutingError(ValueError):
    """A routing change that is not valid; the message says which field and why."""


@dataclass(frozen=True)
class Routing:
    """Where traffic goes: ``weight`` percent to the candidate, the rest to stable."""

    stable: str | None = None
    candidate: str | None = None
    weight: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"stable": self.stable, "candidate": self.candidate, "weight": self.weight}

    def merged(self, data: object) -> Routing:
        """This routing changed by ``data`` (keys left out keep their value), validated."""
        if not isinstance(data, dict):
            raise RoutingError("a routing change is a JSON object")
        unknown = sorted(set(data) - {"stable", "candidate", "weight"})
        if unknown:
            raise RoutingError(f"unknown fields {unknown}; allowed: stable, candidate, weight")
        stable = data.get("stable", self.stable)
        candidate = data.get("candidate", self.candidate)
        weight = data.get("weight", self.weight)
        routing = Routing(
            stable=None if stable is None else check_address(stable, "stable"),
            candidate=None if candidate is None else check_address(candidate, "candidate"),
            weight=check_weight(weight),
        )
        if routing.weight > 0 and routing.candidate is None:
            raise RoutingError(f"weight {routing.weight} needs a candidate")
        if routing.weight < 100 and routing.stable is None and routing.candidate is not None:
            raise RoutingError(f"weight {routing.weight} sends traffic to stable, which is not set")
        return routing


def check_weight(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise RoutingError(f"weight must be an integer from 0 to 100, got {value!r}")
    return value


def check_address(value: object, field: str) -> str:
    """A loopback ``host:port``; the router forwards to this machine only."""
    if not isinstance(value, str):
        raise RoutingError(f"{field} must be 'host:port' or null, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise RoutingError(f"{field} must be 'host:port', got {value!r}")
    if not is_loopback(host):
        raise RoutingError(f"{field} {value!r}: the router forwards to loopback addresses only")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SmoothWeightedRoundRobin:
    """Smooth weighted round robin: every pick adds each weight to its backend's current
    value, takes the largest and subtracts the total from it. Over any ``total``
    consecutive picks each backend is chosen exactly its weight times, spread evenly."""

    def __init__(self, weights: Sequence[tuple[str, int]]) -> None:
        if any(w < 0 for _, w in weights):
            raise ValueError("weights must not be negative")
        self._weights = [(name, w) for name, w in weights if w > 0]
        self._total = sum(w for _, w in self._weights)
        self._current = [0] * len(self._weights)

    def pick(self) -> str | None:
        if not self._weights:
            return None
        best = 0
        for i, (_, w) in enumerate(self._weights):
            self._current[i] += w
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= self._total
        return self._weights[best][0]


class Balancer:
    """The routing and its round robin, changed and read atomically."""

    def __init__(self, routing: Routing) -> None:
        self._lock = threading.Lock()
        self._set(routing)
        self.counts: dict[str, int] = {STABLE: 0, CANDIDATE: 0, "unrouted": 0}

    def _set(self, routing: Routing) -> None:
        self._routing = routing
        weights = []
        if routing.stable is not None:
            weights.append((STABLE, 100 - routing.weight))
        if routing.candidate is not None:
            weights.append((CANDIDATE, routing.weight))
        self._wrr = SmoothWeightedRoundRobin(weights)

    @property
    def routing(self) -> Routing:
        with self._lock:
            return self._routing

    def replace(self, data: object) -> Routing:
        with self._lock:
            routing = self._routing.merged(data)
            if routing != self._routing:
                self._set(routing)
            return routing

    def pick(self) -> tuple[str, str] | None:
        """(backend name, address) for the next request, or None when nothing is routed."""
        with self._lock:
            name = self._wrr.pick()
            if name is None:
                self.counts["unrouted"] += 1
                return None
            self.counts[name] += 1
            address = self._routing.stable if name == STABLE else self._routing.candidate
            assert address is not None
            return name, address


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temporary file next to ``path``, flush it to disk, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RouterState:
    """The router's state file: pid, ports and routing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load_routing(self) -> Routing:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Routing().merged(data.get("routing", {}))
        except (OSError, ValueError, AttributeError):
            return Routing()

    def save(self, *, port: int, admin_port: int, routing: Routing) -> None:
        with self._lock:
            write_json_atomic(
                self.path,
                {
                    "pid": os.getpid(),
                    "port": port,
                    "admin_port": admin_port,
                    "routing": routing.to_json(),
                },
            )


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, from Content-Length or chunked transfer coding."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        total = 0
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > MAX_BODY:
                raise ValueError("request body too large")
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    if length < 0 or length > MAX_BODY:
        raise ValueError("bad Content-Length")
    return handler.rfile.read(length) if length else b""


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], balancer: Balancer) -> None:
        self.balancer = balancer
        super().__init__(address, ProxyHandler)


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, text: str, backend: str | None = None) -> None:
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if backend:
            self.send_header(BACKEND_HEADER, backend)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        try:
            body = _read_body(self)
        except ValueError as e:
            self.close_connection = True
            self._reply(400, f"bad request body: {e}")
            return
        chosen = self.server.balancer.pick()
        if chosen is None:
            self._reply(503, "no backend is routed")
            return
        name, address = chosen
        host, _, port = address.rpartition(":")
        skip = HOP_BY_HOP | {"content-length", "x-forwarded-for", "expect"}
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in skip]
        headers.append(("Connection", "close"))
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        forwarded = self.client_address[0]
        prior = self.headers.get("X-Forwarded-For")
        headers.append(("X-Forwarded-For", f"{prior}, {forwarded}" if prior else forwarded))
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=READ_TIMEOUT_S)
        try:
            try:
                sock = socket.create_connection(
                    (host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S
                )
            except OSError as e:
                self._reply(502, f"{name} backend {address} is not answering: {e}", name)
                return
            sock.settimeout(READ_TIMEOUT_S)
            conn.sock = sock
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body or None)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self._reply(502, f"{name} backend {address} failed: {type(e).__name__}: {e}", name)
                return
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() not in REPLACED:
                    self.send_header(k, v)
            length = str(len(data))
            if self.command == "HEAD":  # no body came; say the size a GET would have
                length = resp.getheader("Content-Length") or length
            self.send_header("Content-Length", length)
            self.send_header(BACKEND_HEADER, name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = _proxy
    do_HEAD = _proxy
    do_POST = _proxy
    do_PUT = _proxy
    do_DELETE = _proxy
    do_PATCH = _proxy
    do_OPTIONS = _proxy


class AdminServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        balancer: Balancer,
        on_change: Callable[[Routing], None],
    ) -> None:
        self.balancer = balancer
        self.on_change = on_change
        self.change_lock = threading.Lock()  # a change and its save happen together
        super().__init__(address, AdminHandler)


class AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AdminServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, code: int, data: object) -> None:
        body = (json.dumps(data) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/weights":
            self._json(200, self.server.balancer.routing.to_json())
        elif path == "/stats":
            self._json(200, dict(self.server.balancer.counts))
        elif path == "/healthz":
            self._json(200, {"ok": True, "pid": os.getpid()})
        else:
            self._json(404, {"error": f"no such resource {path}; try /weights"})

    def do_PUT(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            raw = _read_body(self)
        except ValueError as e:
            self.close_connection = True
            self._json(400, {"error": str(e)})
            return
        if path != "/weights":
            self._json(404, {"error": f"no such resource {path}; try /weights"})
            return
        try:
            data = json.loads(raw or b"null")
            with self.server.change_lock:
                routing = self.server.balancer.replace(data)
                self.server.on_change(routing)
        except json.JSONDecodeError as e:
            self._json(400, {"error": f"not JSON: {e}"})
            return
        except RoutingError as e:
            self._json(400, {"error": str(e)})
            return
        except OSError as e:
            self._json(500, {"error": f"routing changed but not saved: {e}"})
            return
        self._json(200, routing.to_json())


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gatekeeper.targets.local.router", description=__doc__.split("\n")[0]
    )
    p.add_argument("--port", type=_port, required=True, help="traffic port (0: a free port)")
    p.add_argument("--admin-port", type=_port, required=True, help="admin port (0: a free port)")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1", help="a loopback address to listen on")
    args = p.parse_args(argv)
    if not is_loopback(args.host):
        print(f"router: --host {args.host!r} is not a loopback address", file=sys.stderr)
        return 2

    state = RouterState(args.state_file)
    balancer = Balancer(state.load_routing())
    try:
        proxy = ProxyServer((args.host, args.port), balancer)
    except OSError as e:
        print(f"router: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    port = int(proxy.server_address[1])
    admin_port = 0

    def save(routing: Routing) -> None:
        state.save(port=port, admin_port=admin_port, routing=routing)

    try:
        admin = AdminServer((args.host, args.admin_port), balancer, save)
    except OSError as e:
        proxy.server_close()
        print(f"router: cannot listen on admin port {args.admin_port}: {e}", file=sys.stderr)
        return 1
    admin_port = int(admin.server_address[1])

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        for server in (proxy, admin)
    ]
    for t in threads:
        t.start()
    with admin.change_lock:  # written once both ports listen: the readiness signal
        save(balancer.routing)
    print(f"router: traffic on {args.host}:{port}, admin on {args.host}:{admin_port}", flush=True)
    while not stopping.wait(0.5):
        pass
    for server in (proxy, admin):
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
