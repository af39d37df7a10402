"""A real Alertmanager for tests: Debian's binary on a free loopback port, its own storage."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.prom import free_port

__all__ = ["LocalAlertmanager", "alertmanager_binary", "running_alertmanager"]

CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):  # Debian's name, upstream's
        path = shutil.which(name)
        if path is not None:
            return path
    raise RuntimeError(
        "alertmanager is not installed: run scripts/test-deps "
        "(Debian package prometheus-alertmanager)"
    )


@dataclass
class LocalAlertmanager:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def post(
        self,
        labels: Mapping[str, str],
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> None:
        """Send one alert; an ``ends_at`` in the past resolves it."""
        alert: dict[str, Any] = {"labels": dict(labels), "annotations": {}}
        if starts_at is not None:
            alert["startsAt"] = starts_at.isoformat()
        if ends_at is not None:
            alert["endsAt"] = ends_at.isoformat()
        httpx.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def resolve(self, labels: Mapping[str, str]) -> None:
        now = datetime.now(UTC)
        self.post(labels, starts_at=now - timedelta(minutes=10), ends_at=now - timedelta(seconds=1))

    def silence(self, label: str, value: str) -> None:
        now = datetime.now(UTC)
        body = {
            "matchers": [{"name": label, "value": value, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "tests",
            "comment": "known, being worked on",
        }
        httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def running_alertmanager(workdir: Path, ready_timeout: float = 30.0) -> Iterator[LocalAlertmanager]:
    """Alertmanager with a null receiver and clustering off, until the block ends."""
    binary = alertmanager_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    log = workdir / "alertmanager.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalAlertmanager(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"alertmanager not ready after {ready_timeout}s")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
