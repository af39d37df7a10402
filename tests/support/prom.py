"""A real Prometheus for tests: Debian's binary on a free loopback port, temporary data."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(
            f"{binary} is not installed: run scripts/test-deps (Debian package prometheus)"
        )
    return path


@dataclass
class PrometheusServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def wait_for_target_up(self, job: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
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
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (job -> host:port); stop it afterwards."""
    binary = need("prometheus")
    tmp = Path(tempfile.mkdtemp(prefix="prom-"))
    data = data_dir or tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    jobs = "".join(
        f"  - job_name: {job!r}\n    static_configs:\n      - targets: [{addr!r}]\n"
        for job, addr in (targets or {}).items()
    )
    config.write_text(
        f"global:\n  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        + (f"scrape_configs:\n{jobs}" if jobs else "scrape_configs: []\n")
    )
    port = free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--query.lookback-delta=5m",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    server = PrometheusServer(url=url, data_dir=data, process=proc, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after 60s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
