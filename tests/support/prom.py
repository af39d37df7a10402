"""A real Prometheus for tests: the product's local Prometheus plus promtool backfill."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from gatekeeper.engine.local_prometheus import LocalPrometheus, free_port, local_prometheus

__all__ = ["LocalPrometheus", "backfill", "free_port", "prometheus", "wait_for_target_up"]


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(
            f"{binary} is not installed: run scripts/test-deps (Debian package prometheus)"
        )
    return path


def wait_for_target_up(server: LocalPrometheus, job: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{server.url}/api/v1/targets", timeout=5)
        for t in r.json()["data"]["activeTargets"]:
            if t["labels"].get("job") == job and t["health"] == "up":
                return
        time.sleep(0.2)
    raise RuntimeError(f"prometheus target {job} not up after {timeout}s")


def backfill(data_dir: Path, openmetrics: str) -> None:
    """Write history into TSDB blocks with promtool (before Prometheus starts)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False) as f:
        f.write(openmetrics)
        path = f.name
    try:
        subprocess.run(
            [need("promtool"), "tsdb", "create-blocks-from", "openmetrics", path, str(data_dir)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        os.unlink(path)


@contextlib.contextmanager
def prometheus(
    *,
    targets: dict[str, str] | None = None,
    scrape_interval: str = "15s",
    data_dir: Path | None = None,
    file_sd: Path | None = None,
) -> Iterator[LocalPrometheus]:
    """Start Prometheus scraping ``targets`` (job -> host:port); stop it afterwards."""
    need("prometheus")
    with local_prometheus(
        scrape_interval=scrape_interval, targets=targets, data_dir=data_dir, file_sd=file_sd
    ) as server:
        yield server
