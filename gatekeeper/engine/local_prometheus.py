"""A local Prometheus for the embedded default: Debian's binary on a free loopback port."""

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

from gatekeeper.domain.errors import GatekeeperError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass
class LocalPrometheus:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path


def _config(scrape_interval: str, targets: dict[str, str], file_sd: Path | None) -> str:
    jobs = [
        f"  - job_name: {job!r}\n    static_configs:\n      - targets: [{addr!r}]\n"
        for job, addr in targets.items()
    ]
    if file_sd is not None:
        jobs.append(
            f"  - job_name: 'gatekeeper-local'\n    file_sd_configs:\n"
            f"      - files: [{str(file_sd)!r}]\n        refresh_interval: 1s\n"
        )
    return (
        f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
        + ("scrape_configs:\n" + "".join(jobs) if jobs else "scrape_configs: []\n")
    )


@contextlib.contextmanager
def local_prometheus(
    *,
    scrape_interval: str = "1s",
    targets: dict[str, str] | None = None,
    file_sd: Path | None = None,
    data_dir: Path | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[LocalPrometheus]:
    """Run Prometheus until the block ends; its temporary files go with it."""
    binary = prometheus_binary()
    if binary is None:
        raise GatekeeperError("prometheus is not installed (Debian package: prometheus)")
    tmp = Path(tempfile.mkdtemp(prefix="gatekeeper-prom-"))
    data = data_dir or tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    config.write_text(_config(scrape_interval, targets or {}, file_sd))
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
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise GatekeeperError(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise GatekeeperError(f"prometheus not ready after {ready_timeout}s")
            time.sleep(0.1)
        yield LocalPrometheus(url=url, data_dir=data, process=proc, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
