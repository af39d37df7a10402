"""A bounded load generator for loopback services: steady requests per second, counted.

    python -m gatekeeper.targets.local.loadgen --url http://127.0.0.1:8080/ --rps 50 --duration 60

In-process::

    gen = LoadGenerator("http://127.0.0.1:8080/", rps=50, duration=60).start()
    ...
    gen.stop()
    print(gen.stats().by_status, gen.stats().by_version)

It always stops by itself once ``duration`` has passed, and it sends to loopback
addresses only. Responses are counted by status code, by the ``X-Version`` header (the
demo service sets it) and by the router's ``X-Gatekeeper-Backend`` header.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from gatekeeper.domain.errors import InvalidInput

from .router import BACKEND_HEADER, is_loopback

MAX_RPS = 5000.0
MAX_DURATION_S = 24 * 3600.0


@dataclass(frozen=True)
class LoadStats:
    """What the generator sent and what came back."""

    sent: int
    by_status: dict[int, int] = field(default_factory=dict)
    by_version: dict[str, int] = field(default_factory=dict)
    by_backend: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # no HTTP answer, by error type
    elapsed_s: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.by_status.values())

    def share(self, status: int) -> float:
        return self.by_status.get(status, 0) / self.answered if self.answered else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_version": dict(sorted(self.by_version.items())),
            "by_backend": dict(sorted(self.by_backend.items())),
            "failures": dict(sorted(self.failures.items())),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _check_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise InvalidInput(f"load generator url {url!r}: only http:// URLs are supported")
    host = parts.hostname or ""
    if not is_loopback(host):
        raise InvalidInput(
            f"load generator url {url!r}: host {host!r} is not a loopback address; "
            "the load generator sends to this machine only (127.0.0.1, ::1, localhost)"
        )
    try:
        port = parts.port or 80
    except ValueError as e:
        raise InvalidInput(f"load generator url {url!r}: {e}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


class LoadGenerator:
    """Sends ``rps`` GET requests per second to ``url`` for at most ``duration`` seconds.

    Requests are spread evenly over ``concurrency`` worker threads, each with its own
    keep-alive connection; a worker that falls more than a second behind skips the
    missed slots instead of bursting.
    """

    def __init__(
        self,
        url: str,
        rps: float,
        *,
        duration: float = 60.0,
        concurrency: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.path = _check_url(url)
        self.url = url
        if not 0 < rps <= MAX_RPS:
            raise InvalidInput(f"rps must be above 0 and at most {MAX_RPS:g}, got {rps}")
        if not (0 < duration <= MAX_DURATION_S) or math.isnan(duration):
            raise InvalidInput(
                f"duration must be above 0 and at most {MAX_DURATION_S:g} seconds, got {duration}"
            )
        if not 0 < timeout <= 60:
            raise InvalidInput(f"timeout must be above 0 and at most 60 seconds, got {timeout}")
        self.rps = float(rps)
        self.duration = float(duration)
        self.timeout = float(timeout)
        default = max(2, min(64, math.ceil(self.rps / 10)))
        self.concurrency = concurrency or default
        if not 1 <= self.concurrency <= 512:
            raise InvalidInput(f"concurrency must be 1..512, got {self.concurrency}")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sent = 0
        self._status: Counter[int] = Counter()
        self._version: Counter[str] = Counter()
        self._backend: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._started: float | None = None
        self._ended: float | None = None

    # -- control --------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("the load generator was started already")
        self._started = time.monotonic()
        deadline = self._started + self.duration
        for i in range(self.concurrency):
            t = threading.Thread(
                target=self._worker, args=(i, deadline), name=f"loadgen-{i}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def stop(self, timeout: float | None = None) -> LoadStats:
        """Stop sending and wait for requests in flight (at most ``timeout`` seconds)."""
        self._stop.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> LoadStats:
        """Wait until the duration has passed (or ``stop``), then return the counts."""
        limit = self.timeout + 1.0 + (self.duration if not self._stop.is_set() else 0.0)
        end = time.monotonic() + (timeout if timeout is not None else limit)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        if self._ended is None and not self.running:
            self._ended = time.monotonic()
        return self.stats()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> LoadStats:
        with self._lock:
            now = self._ended or time.monotonic()
            return LoadStats(
                sent=self._sent,
                by_status=dict(self._status),
                by_version=dict(self._version),
                by_backend=dict(self._backend),
                failures=dict(self._failures),
                elapsed_s=(now - self._started) if self._started is not None else 0.0,
            )

    def reset(self) -> None:
        """Zero the counters (the generator keeps running)."""
        with self._lock:
            self._sent = 0
            self._status.clear()
            self._version.clear()
            self._backend.clear()
            self._failures.clear()

    # -- workers --------------------------------------------------------------------------

    def _worker(self, index: int, deadline: float) -> None:
        interval = self.concurrency / self.rps
        assert self._started is not None
        next_at = self._started + index / self.rps
        conn: http.client.HTTPConnection | None = None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_at:
                    if self._stop.wait(next_at - now):
                        break
                    now = time.monotonic()
                if now >= deadline:
                    break
                if now - next_at > 1.0:  # fell behind: skip, do not burst
                    next_at += math.floor((now - next_at) / interval) * interval
                next_at += interval
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn = self._one(conn)
        finally:
            if conn is not None:
                conn.close()

    def _one(self, conn: http.client.HTTPConnection) -> http.client.HTTPConnection | None:
        """Send one request; returns the connection to reuse, or None to open a new one."""
        with self._lock:
            self._sent += 1
        try:
            conn.request("GET", self.path, headers={"User-Agent": "gatekeeper-loadgen"})
            resp = conn.getresponse()
            resp.read()
            version = resp.getheader("X-Version")
            backend = resp.getheader(BACKEND_HEADER)
            keep = not resp.will_close
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            with self._lock:
                self._failures[type(e).__name__] += 1
            return None
        with self._lock:
            self._status[resp.status] += 1
            if version:
                self._version[version] += 1
            if backend:
                self._backend[backend] += 1
        if not keep:
            conn.close()
            return None
        return conn


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gatekeeper.targets.local.loadgen", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", required=True, help="a loopback http:// URL")
    p.add_argument("--rps", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, required=True, help="seconds; it stops by itself")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = p.parse_args(argv)
    try:
        gen = LoadGenerator(
            args.url,
            args.rps,
            duration=args.duration,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
    except InvalidInput as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2
    gen.start()
    try:
        stats = gen.wait()
    except KeyboardInterrupt:
        stats = gen.stop()
    if args.json:
        print(json.dumps(stats.to_json(), indent=2))
    else:
        print(
            f"sent {stats.sent} in {stats.elapsed_s:.1f}s; "
            f"status {dict(sorted(stats.by_status.items()))}; "
            f"version {dict(sorted(stats.by_version.items()))}; "
            f"backend {dict(sorted(stats.by_backend.items()))}; "
            f"failures {dict(sorted(stats.failures.items()))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
