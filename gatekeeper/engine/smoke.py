"""HTTP smoke checks on the candidate's preview route, retried with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.plan import SmokeCheck


def run_smoke_checks(
    base_url: str,
    checks: Sequence[SmokeCheck],
    *,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
) -> list[str]:
    """Each check must answer its expected status within its attempts; returns one line each."""
    own = client is None
    http = client or httpx.Client()
    lines = []
    try:
        for check in checks:
            url = base_url.rstrip("/") + check.path
            last = "no answer"
            for attempt in range(1, check.attempts + 1):
                try:
                    r = http.get(url, timeout=check.timeout)
                    if r.status_code == check.expect_status:
                        lines.append(f"GET {check.path} -> {r.status_code} (attempt {attempt})")
                        break
                    last = f"answered {r.status_code}"
                except httpx.HTTPError as e:
                    last = f"{type(e).__name__}"
                if attempt < check.attempts:
                    sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
            else:
                raise StepFailed(
                    f"smoke check GET {check.path} on {base_url}: {last}, expected "
                    f"{check.expect_status} ({check.attempts} attempts)"
                )
    finally:
        if own:
            http.close()
    return lines
