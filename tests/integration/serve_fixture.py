"""`gatekeeper serve` as a real process for tests: its config and tokens files, its URL
once it listens, and a stop (SIGTERM) or a crash (SIGKILL) of that process only."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gatekeeper.engine.demo import service_command

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"gatekeeper serve: listening on (http://\S+)")


@dataclass
class Tokens:
    path: Path
    by_name: dict[str, str]


def write_tokens(path: Path, people: dict[str, str]) -> Tokens:
    """A tokens file: ``name: role`` for each person, each with a fresh token."""
    tokens = {name: "gkt_" + secrets.token_urlsafe(32) for name in people}
    path.write_text("".join(f"{n}:{people[n]}:{tokens[n]}\n" for n in people))
    return Tokens(path, tokens)


def write_config(path: Path, db_url: str, tokens: Tokens, **extra: Any) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "port": 0},
        "store": {"url": db_url},
        "controller": {"targets": ["local"], "interval": "0.5s"},
        "lease": {"duration": "3s", "renew": "1s"},
        "auth": {"tokens_file": str(tokens.path)},
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def release_spec(
    version: str, router_port: int, state_dir: Path, *flags: str, **extra: Any
) -> dict[str, Any]:
    return {
        "app": "shop",
        "environment": "test",
        "version": version,
        "command": service_command(version, "--latency-ms", "5", *flags),
        "stable": {"version": "v1", "command": service_command("v1", "--latency-ms", "5")},
        "strategy": {"type": "canary", "steps": [50, 100], "analysis": "2m"},
        "target": {"type": "local", "router_port": router_port, "state_dir": str(state_dir)},
        "time_scale": 30,
        "hold_timeout": "30m",
        **extra,
    }


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def leads(self) -> bool:
        return "gatekeeper_leader 1.0" in self.get("/metrics").text

    def crash(self) -> None:
        """SIGKILL this process alone (the releases' processes it started live on)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "GATEKEEPER_HOME": str(home), **extra}
    env.pop("GATEKEEPER_DB_URL", None)
    env.pop("GATEKEEPER_PROMETHEUS_URL", None)
    return env


@contextlib.contextmanager
def running_serve(
    config: Path, log: Path, home: Path, timeout: float = 60.0
) -> Iterator[ServeProcess]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=cli_env(home),
            start_new_session=True,
        )
    served: ServeProcess | None = None
    try:
        deadline = time.monotonic() + timeout
        while served is None:
            found = LISTENING.search(log.read_text(errors="replace"))
            if found:
                served = ServeProcess(process, found.group(1), log)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gatekeeper serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if served.get("/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatekeeper serve not ready: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield served
    finally:
        if served is not None:
            served.stop()
        elif process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_for(what: str, check: Any, timeout: float = 120.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(every)
