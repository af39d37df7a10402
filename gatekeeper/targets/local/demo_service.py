"""A demo HTTP service: answers with its app and version, fails and slows on request.

    python -m gatekeeper.targets.local.demo_service --app demo --version v2 --port 8081 \
        [--error-rate 0.08] [--latency-ms 20] [--latency-jitter-ms 5] \
        [--slow-share 0.0 --slow-ms 650] [--host 127.0.0.1] [--lazy-metrics] [--no-metrics] \
        [--leak-kb-per-request 0] [--cpu-ms-per-request 0] [--drop-share 0.0] \
        [--db-pool-size 0 --db-hold-ms 0]

``GET /healthz`` always answers 200; ``GET /metrics`` is the Prometheus exposition with
``http_requests_total{app,version,code}`` and ``http_request_duration_seconds{app,version}``
(the ``http`` metric profile) and the process collector's ``process_*`` metrics. Any
other path is an application request: 500 with probability ``error_rate``, 200
otherwise, after sleeping the configured latency.

To show the resource gates failing, a version can also be told to:

* keep ``leak_kb_per_request`` KiB of every request forever (a memory leak);
* burn ``cpu_ms_per_request`` ms of CPU on every request;
* close the connection on ``drop_share`` of the requests, unanswered and before its
  metrics count them (a candidate that turns users away unseen);
* take one of ``db_pool_size`` database connections for ``db_hold_ms`` ms on every
  request, waiting while none is free, and export the pool as OpenTelemetry names it:
  ``db_client_connections_usage{pool_name,state}`` and ``db_client_connections_max``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest

CODES = ("200", "500")


@dataclass(frozen=True)
class Behaviour:
    """How the service answers application requests."""

    error_rate: float = 0.0
    latency_ms: float = 20.0
    latency_jitter_ms: float = 5.0
    slow_share: float = 0.0
    slow_ms: float = 650.0
    leak_kb_per_request: float = 0.0
    cpu_ms_per_request: float = 0.0
    drop_share: float = 0.0
    db_hold_ms: float = 0.0  # how long a request holds a connection of the pool, if any

    def __post_init__(self) -> None:
        for name in ("error_rate", "slow_share", "drop_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "slow_ms",
            "leak_kb_per_request",
            "cpu_ms_per_request",
            "db_hold_ms",
        ):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")

    def delay_s(self, rng: random.Random) -> float:
        if self.slow_share > 0 and rng.random() < self.slow_share:
            ms = self.slow_ms
        else:
            ms = self.latency_ms + rng.uniform(-self.latency_jitter_ms, self.latency_jitter_ms)
        return max(0.0, ms) / 1000.0


class DemoServer(ThreadingHTTPServer):
    """A threaded HTTP server carrying the service's identity, behaviour and metrics."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        *,
        app: str,
        version: str,
        behaviour: Behaviour,
        seed: int | None = None,
        lazy_metrics: bool = False,
        metrics: bool = True,
        db_pool_size: int = 0,
    ) -> None:
        """``db_pool_size``: connections of a stand-in database pool (0: none, no pool
        metrics)."""
        self.app = app
        self.metrics = metrics
        self.version = version
        self.behaviour = behaviour
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by response code.",
            ["app", "version", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["app", "version"],
            registry=self.registry,
        )
        # Every client library exports these by default: CPU seconds, resident memory.
        ProcessCollector(registry=self.registry)
        self.pool = DemoPool(db_pool_size, self.registry)
        self._leaked: list[bytes] = []
        # Series that exist from the start at 0, so increase() sees their first errors.
        # With lazy_metrics they appear at their first request, as client libraries do by
        # default for labelled metrics.
        if not lazy_metrics:
            for code in CODES:
                self.requests.labels(app, version, code)
            self.duration.labels(app, version)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        super().__init__(address, DemoHandler)

    def draw(self) -> tuple[float, bool]:
        """The delay and whether this request fails."""
        with self._rng_lock:
            delay = self.behaviour.delay_s(self._rng)
            fail = self.behaviour.error_rate > 0 and self._rng.random() < self.behaviour.error_rate
        return delay, fail

    def drops(self) -> bool:
        """Whether this request is turned away unanswered."""
        share = self.behaviour.drop_share
        if share <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < share

    def work(self) -> None:
        """What a request costs besides its latency: CPU burnt, memory kept, a connection."""
        b = self.behaviour
        if b.cpu_ms_per_request > 0:
            until = time.thread_time() + b.cpu_ms_per_request / 1000
            while time.thread_time() < until:
                pass
        if b.leak_kb_per_request > 0:
            chunk = b"\x01" * int(b.leak_kb_per_request * 1024)  # written, so resident
            with self._rng_lock:
                self._leaked.append(chunk)
        if self.pool.size > 0:
            with self.pool.connection():
                time.sleep(b.db_hold_ms / 1000)


class DemoPool:
    """A database pool stand-in: ``size`` connections, taken one per request and waited for
    when none is free, exported with OpenTelemetry's names (semantic conventions up to 1.25)."""

    NAME = "demo"

    def __init__(self, size: int, registry: CollectorRegistry) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(max(size, 1))
        self._lock = threading.Lock()
        self._used = 0
        if size <= 0:
            return
        self._usage = Gauge(
            "db_client_connections_usage",
            "Connections in the pool, by state.",
            ["pool_name", "state"],
            registry=registry,
        )
        maximum = Gauge(
            "db_client_connections_max",
            "The most connections the pool opens.",
            ["pool_name"],
            registry=registry,
        )
        maximum.labels(self.NAME).set(size)
        self._set()

    def _set(self) -> None:
        self._usage.labels(self.NAME, "used").set(self._used)
        self._usage.labels(self.NAME, "idle").set(self.size - self._used)

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        self._free.acquire()
        with self._lock:
            self._used += 1
            self._set()
        try:
            yield
        finally:
            with self._lock:
                self._used -= 1
                self._set()
            self._free.release()


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DemoServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the log

    def _send(
        self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App", self.server.app)
        self.send_header("X-Version", self.server.version)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    def _handle(self) -> None:
        self._drain_body()
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n")
            return
        if path == "/metrics" and not self.server.metrics:
            self._send(404, b"no metrics here\n")
            return
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            return
        if self.server.drops():
            # Unanswered and uncounted: the connection closes before the metrics see it.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        start = time.perf_counter()
        delay, fail = self.server.draw()
        self.server.work()
        if delay > 0:
            time.sleep(delay)
        code = 500 if fail else 200
        app, version = self.server.app, self.server.version
        text = "error" if fail else "ok"
        body = f"{app} {version} {text}\n".encode()
        self.server.requests.labels(app, version, str(code)).inc()
        self.server.duration.labels(app, version).observe(time.perf_counter() - start)
        self._send(code, body)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle
    do_PATCH = _handle


def serve(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM or SIGINT, then close the socket and return."""

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gatekeeper.targets.local.demo_service", description=__doc__.split("\n")[0]
    )
    p.add_argument("--app", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--port", type=_port, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--error-rate", type=_share, default=0.0)
    p.add_argument("--latency-ms", type=_non_negative, default=20.0)
    p.add_argument("--latency-jitter-ms", type=_non_negative, default=5.0)
    p.add_argument("--slow-share", type=_share, default=0.0)
    p.add_argument("--slow-ms", type=_non_negative, default=650.0)
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    p.add_argument(
        "--lazy-metrics",
        action="store_true",
        help="create request series at their first request (client libraries' default)",
    )
    p.add_argument("--no-metrics", action="store_true", help="answer /metrics with 404")
    p.add_argument(
        "--leak-kb-per-request",
        type=_non_negative,
        default=0.0,
        help="keep this many KiB of every request forever (a memory leak)",
    )
    p.add_argument(
        "--cpu-ms-per-request",
        type=_non_negative,
        default=0.0,
        help="burn this many ms of CPU on every request",
    )
    p.add_argument(
        "--drop-share",
        type=_share,
        default=0.0,
        help="close the connection on this share of requests, before they are counted",
    )
    p.add_argument(
        "--db-pool-size",
        type=_count,
        default=0,
        help="a database pool of this many connections, exported as db_client_connections_*",
    )
    p.add_argument(
        "--db-hold-ms",
        type=_non_negative,
        default=0.0,
        help="hold a pool connection this long on every request",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    behaviour = Behaviour(
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        slow_share=args.slow_share,
        slow_ms=args.slow_ms,
        leak_kb_per_request=args.leak_kb_per_request,
        cpu_ms_per_request=args.cpu_ms_per_request,
        drop_share=args.drop_share,
        db_hold_ms=args.db_hold_ms,
    )
    try:
        server = DemoServer(
            (args.host, args.port),
            app=args.app,
            version=args.version,
            behaviour=behaviour,
            seed=args.seed,
            lazy_metrics=args.lazy_metrics,
            metrics=not args.no_metrics,
            db_pool_size=args.db_pool_size,
        )
    except OSError as e:
        print(f"demo_service: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"demo_service: {args.app} {args.version} on http://{host!s}:{port}", flush=True)
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
