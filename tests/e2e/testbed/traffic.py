"""A load generator for the bed's Gateway: requests with a route's Host, counted per version.

The demo app names its version in the `X-Version` header of every answer. A response without
it (Traefik's own 404 for an unknown host, 502/503 with no ready backend) counts in `by_code`
only; a request that got no response at all counts in `failures`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

VERSION_HEADER = "X-Version"


@dataclass
class TrafficResult:
    by_version: Counter[str] = field(default_factory=Counter)
    by_code: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    sent: int = 0
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.by_code.values())

    def share(self, version: str) -> float:
        """The share of versioned answers that came from `version` (0 when there were none)."""
        total = sum(self.by_version.values())
        return self.by_version[version] / total if total else 0.0

    def __str__(self) -> str:
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.by_version.items()))
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(self.by_code.items()))
        return (
            f"{self.sent} requests in {self.seconds:.1f}s: versions {{{versions}}}, "
            f"codes {{{codes}}}, {self.failures} without response"
        )


def send(
    gateway_url: str,
    host: str,
    *,
    requests: int | None = None,
    duration: float | None = None,
    rps: float | None = None,
    path: str = "/",
    concurrency: int = 8,
    timeout: float = 5.0,
) -> TrafficResult:
    """Sends `requests` requests, or `rps` per second for `duration` seconds, through the Gateway.

    Without `rps`, requests go out as fast as `concurrency` connections allow.
    """
    if requests is None:
        if duration is None or rps is None:
            raise ValueError("give requests=N, or duration=D with rps=R")
        requests = math.ceil(duration * rps)
    if requests <= 0:
        raise ValueError(f"requests must be positive, got {requests}")
    result = TrafficResult(sent=requests)
    lock = threading.Lock()
    next_index = iter(range(requests))
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    with httpx.Client(
        base_url=gateway_url, headers={"Host": host}, timeout=timeout, limits=limits
    ) as http:

        def worker() -> None:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                if rps:
                    delay = started + index / rps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                try:
                    response = http.get(path)
                except httpx.HTTPError:
                    with lock:
                        result.failures += 1
                    continue
                version = response.headers.get(VERSION_HEADER)
                with lock:
                    result.by_code[response.status_code] += 1
                    if version:
                        result.by_version[version] += 1

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True)
class Answer:
    """One request of a BackgroundLoad: when it was sent (time.time()), who answered it."""

    at: float
    version: str | None
    code: int | None  # None: no response (connection refused, reset, timeout)


class BackgroundLoad:
    """Steady traffic through the Gateway from a thread while a test does something else;
    every request is recorded with the moment it was sent (the moment Traefik routed it).

        with BackgroundLoad(bed.gateway_url, host, rps=80) as load:
            run_release(...)
        load.between(t0, t1)  # a TrafficResult of the requests sent in [t0, t1)
        load.per_second()     # [(second, Counter of versions)], for a message
    """

    def __init__(
        self,
        gateway_url: str,
        host: str,
        *,
        rps: float = 80.0,
        concurrency: int = 8,
        timeout: float = 5.0,
        path: str = "/",
    ) -> None:
        if rps <= 0:
            raise ValueError(f"rps must be positive, got {rps}")
        self.gateway_url = gateway_url
        self.host = host
        self.rps = rps
        self.concurrency = concurrency
        self.timeout = timeout
        self.path = path
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next = 0
        self._started = 0.0
        self._http: httpx.Client | None = None

    def __enter__(self) -> BackgroundLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        self._http = httpx.Client(
            base_url=self.gateway_url,
            headers={"Host": self.host},
            timeout=self.timeout,
            limits=limits,
        )
        self._started = time.monotonic()
        self._threads = [
            threading.Thread(target=self._worker, name=f"load {self.host} {i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 2)
        if self._http is not None:
            self._http.close()
            self._http = None

    def _worker(self) -> None:
        http = self._http
        assert http is not None
        while not self._stop.is_set():
            with self._lock:
                index = self._next
                self._next += 1
            delay = self._started + index / self.rps - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            sent = time.time()
            try:
                response = http.get(self.path)
            except httpx.HTTPError:
                answer = Answer(sent, None, None)
            else:
                answer = Answer(sent, response.headers.get(VERSION_HEADER), response.status_code)
            with self._lock:
                self.answers.append(answer)

    def mark(self) -> float:
        """Now, on the clock answers are stamped with."""
        return time.time()

    def between(self, start: float, end: float | None = None) -> TrafficResult:
        """The requests sent in [start, end) (to now without an end)."""
        with self._lock:
            chosen = [a for a in self.answers if a.at >= start and (end is None or a.at < end)]
        result = TrafficResult(sent=len(chosen))
        for a in chosen:
            if a.code is None:
                result.failures += 1
                continue
            result.by_code[a.code] += 1
            if a.version:
                result.by_version[a.version] += 1
        if chosen:
            result.seconds = chosen[-1].at - chosen[0].at
        return result

    def per_second(
        self, start: float | None = None, end: float | None = None
    ) -> list[tuple[int, Counter[str]]]:
        """Answers per whole second since ``start`` (default the first request) by version;
        no response counts as `-`, an answer without a version as its code."""
        with self._lock:
            answers = list(self.answers)
        if not answers:
            return []
        origin = answers[0].at if start is None else start
        seconds: dict[int, Counter[str]] = {}
        for a in answers:
            if a.at < origin or (end is not None and a.at >= end):
                continue
            key = a.version or ("-" if a.code is None else str(a.code))
            seconds.setdefault(int(a.at - origin), Counter())[key] += 1
        return sorted(seconds.items())
