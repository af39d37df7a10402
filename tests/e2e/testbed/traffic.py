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
