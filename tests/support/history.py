"""Synthetic http-profile history in OpenMetrics text, for promtool backfill."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class Traffic:
    """Traffic at one moment: requests/s, share of 5xx, share of 4xx, share that is slow."""

    rps: float
    errors: float = 0.0
    client_errors: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.65
    fast_s: float = 0.1


def series(
    app: str,
    version: str,
    start: float,
    seconds: float,
    traffic: Callable[[float], Traffic],
    step: float = 15.0,
) -> tuple[list[str], list[str]]:
    """(counter lines, histogram lines) for one app/version from start for seconds."""
    counters: dict[str, list[str]] = {"200": [], "404": [], "500": []}
    hist: dict[str, list[str]] = {str(le): [] for le in BUCKETS}
    hist["+Inf"] = []
    totals = {"200": 0.0, "404": 0.0, "500": 0.0}
    bucket_totals = {k: 0.0 for k in hist}
    n = int(seconds // step)
    for i in range(n + 1):
        t = start + i * step
        if i > 0:
            tr = traffic(t - start)
            count = tr.rps * step
            totals["500"] += count * tr.errors
            totals["404"] += count * tr.client_errors
            totals["200"] += count * (1 - tr.errors - tr.client_errors)
            for key in bucket_totals:
                le = math.inf if key == "+Inf" else float(key)
                share = (1 - tr.slow if tr.fast_s <= le else 0.0) + (
                    tr.slow if tr.slow_s <= le else 0.0
                )
                bucket_totals[key] += count * share
        for code, total in totals.items():
            counters[code].append(
                f'http_requests_total{{app="{app}",version="{version}",code="{code}"}} '
                f"{total:.3f} {t:.3f}"
            )
        for key, total in bucket_totals.items():
            hist[key].append(
                f'http_request_duration_seconds_bucket{{app="{app}",version="{version}",'
                f'le="{key}"}} {total:.3f} {t:.3f}'
            )
    return [ln for lines in counters.values() for ln in lines], [
        ln for lines in hist.values() for ln in lines
    ]


def openmetrics(parts: Sequence[tuple[list[str], list[str]]]) -> str:
    counter_lines = [ln for c, _ in parts for ln in c]
    hist_lines = [ln for _, h in parts for ln in h]
    return (
        "# HELP http_requests Requests served.\n# TYPE http_requests counter\n"
        + "\n".join(counter_lines)
        + "\n# HELP http_request_duration_seconds Request duration.\n"
        "# TYPE http_request_duration_seconds histogram\n" + "\n".join(hist_lines) + "\n# EOF\n"
    )


def histogram(
    app: str,
    version: str,
    start: float,
    seconds: float,
    rps: float,
    shares: Mapping[str, float],
    step: float = 15.0,
) -> tuple[list[str], list[str]]:
    """(counter lines, histogram lines) with buckets of one's choosing, for ``openmetrics``.

    ``shares`` maps each ``le`` text to the share of requests at or under it (cumulative;
    "+Inf" is the total and must be there), held steady at ``rps`` requests/s, all 200s.
    """
    if shares.get("+Inf") != 1.0:
        raise ValueError(f"shares {dict(shares)}: the +Inf bucket must hold every request (1.0)")
    n = int(seconds // step)
    counters = [
        f'http_requests_total{{app="{app}",version="{version}",code="200"}} '
        f"{rps * step * i:.3f} {start + i * step:.3f}"
        for i in range(n + 1)
    ]
    buckets = [
        f'http_request_duration_seconds_bucket{{app="{app}",version="{version}",le="{le}"}} '
        f"{rps * step * i * share:.3f} {start + i * step:.3f}"
        for le, share in shares.items()
        for i in range(n + 1)
    ]
    return counters, buckets
