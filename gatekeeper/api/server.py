"""The HTTP server: uvicorn on a socket bound before it starts, so the address is known
(port 0 takes a free one), in the foreground (`gatekeeper serve`) or a thread (tests)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import anyio.to_thread
import uvicorn
from fastapi import FastAPI

# The worker threads that answer the API's requests (anyio's default is 40). Each one
# holds the interpreter's lock and a store connection while it works: more of them at once
# only take turns, and under a burst a store transaction waits for the lock while others
# wait for its rows (bench/api_latency.py, 100 requests/s on PostgreSQL: p95 11 ms with 4
# threads, 256 ms with 8, saturated with 40). Requests beyond them wait in the event loop.
API_THREADS = 4


class _Server(uvicorn.Server):
    """uvicorn that, on SIGINT or SIGTERM, only returns from ``run``: the caller then stops
    the service in order (uvicorn's own handling raises the signal again once it is done,
    which would end the process before that). A second signal stops at once."""

    threads = API_THREADS

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
        await super().startup(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

        signals = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, stop) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a response written in two parts (headers, body)
    # must not wait for the client's delayed ACK (40 ms on Linux) between them.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ApiServer:
    """uvicorn serving ``app`` on ``host:port``; ``url`` is known once constructed."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, threads: int = API_THREADS
    ) -> None:
        self.socket = bind(host, port)
        bound_host, bound_port = self.socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self.server = _Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        self.server.threads = threads
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (in the main thread) or ``stop``."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, ready_timeout: float = 10.0) -> ApiServer:
        """Serve from a thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
