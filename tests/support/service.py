"""`gatekeeper serve` in a test: the service on a real HTTP server, tokens for every role,
a database per test (SQLite or a schema of its own on PostgreSQL), and a fake run."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from gatekeeper.api.app import create_app
from gatekeeper.api.server import ApiServer
from gatekeeper.domain.clock import Clock
from gatekeeper.domain.fencing import Deposed
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.engine.auth import issue_token
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions, validate
from gatekeeper.engine.service.config import parse_service_config
from gatekeeper.engine.service.wiring import Service, build_service
from gatekeeper.store.sql import normalise_url

PG_URL = os.environ.get("GATEKEEPER_TEST_PG_URL", "").strip()
if os.environ.get("CI") and not PG_URL:
    raise RuntimeError(
        "GATEKEEPER_TEST_PG_URL is not set: run the tests through scripts/with-postgres"
    )

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="set GATEKEEPER_TEST_PG_URL to run"),
        ],
    ),
]

# Principals and their roles; "carol" may both submit and approve (four eyes).
PEOPLE: dict[str, tuple[str, ...]] = {
    "vera": ("viewer",),
    "ci-bot": ("ci",),
    "rita": ("release-manager",),
    "leo": ("engineering-lead",),
    "cora": ("cto",),
    "ada": ("admin",),
    "carol": ("ci", "release-manager"),
}
ROLE_OF = {"viewer": "vera", "ci": "ci-bot", "release-manager": "rita",
           "engineering-lead": "leo", "cto": "cora", "admin": "ada"}  # fmt: skip


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a schema of its own on the PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'gk-{uuid.uuid4().hex[:6]}.db'}"
        return
    base = normalise_url(PG_URL)
    schema = f"gk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def local_spec(version: str = "v2", *, app: str = "shop", **extra: Any) -> dict[str, Any]:
    """A local-target spec (never run by the fake run)."""
    command = "python -m gatekeeper.targets.local.demo_service --port {port}"
    return {
        "app": app,
        "environment": extra.pop("environment", "production"),
        "version": version,
        "command": command,
        "stable": {"version": "v1", "command": command},
        "strategy": {"type": "canary", "steps": [50, 100], "analysis": "1m"},
        **extra,
    }


class FakeRun:
    """Runs a release by completing its steps in the store, once ``finish`` allows it (or at
    once when ``instant``). Counts the runs of each release."""

    def __init__(self, *, instant: bool = True) -> None:
        self.instant = instant
        self.runs: dict[str, int] = {}
        self.deposed: list[str] = []  # releases whose run was refused a write (Deposed)
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def finish(self, release_id: str) -> None:
        self._gate(release_id).set()

    def _gate(self, release_id: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(release_id, threading.Event())

    def __call__(self, spec: ReleaseSpec, options: RunOptions) -> Outcome:
        store = options.store
        assert store is not None
        rid = spec.release_id
        with self._lock:
            self.runs[rid] = self.runs.get(rid, 0) + 1
        plan, _ = validate(spec)
        try:
            record = store.get_release(rid)
            assert record is not None
            if record.phase is not Phase.ROLLING_BACK:
                store.set_phase(rid, Phase.RUNNING, "running")
            while not self.instant and not self._gate(rid).wait(0.05):
                record = store.get_release(rid)  # as the executor's check for an abort
                if record is not None and record.phase in (Phase.ABORTED, Phase.ROLLING_BACK):
                    break
            record = store.get_release(rid)
            assert record is not None
            if record.phase is Phase.ROLLING_BACK:  # the executor's rollback, in short
                ended = Phase.ABORTED if record.stopped else Phase.ROLLED_BACK
                store.set_phase(rid, ended, record.reason)
                return Outcome(rid, ended, record.reason)
            if record.phase is Phase.ABORTED:
                return Outcome(rid, record.phase, record.reason)
            for index in range(record.next_step, len(plan.steps)):
                store.complete_step(rid, index, plan.steps[index].name, "done")
            store.set_phase(rid, Phase.PROMOTED, "promoted")
        except Deposed:
            self.deposed.append(rid)
            raise
        return Outcome(rid, Phase.PROMOTED, "promoted")


@dataclass
class Harness:
    service: Service
    url: str
    tokens: dict[str, str]
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def headers(self, who: str | None, **extra: str) -> dict[str, str]:
        found = dict(extra)
        if who is not None:
            found["Authorization"] = f"Bearer {self.tokens[who]}"
        return found

    def call(
        self, method: str, path: str, who: str | None, json: Any = None, **headers: str
    ) -> httpx.Response:
        return self.http.request(method, path, json=json, headers=self.headers(who, **headers))

    def submit(self, spec: dict[str, Any], who: str = "ci-bot", key: str | None = None) -> Any:
        extra = {} if key is None else {"Idempotency-Key": key}
        r = self.call("POST", "/api/v1/releases", who, spec, **extra)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def lead(self) -> None:
        """Take the lease now (the elector's first round) without starting its thread."""
        self.service.controller.elector.step()
        assert self.service.controller.elector.term() is not None

    def tick(self) -> None:
        self.service.controller.tick()


@contextmanager
def serving(
    db_url: str,
    *,
    run: Any = None,
    clock: Clock | None = None,
    config: dict[str, Any] | None = None,
    holder: str = "test-replica",
    environ: dict[str, str] | None = None,
) -> Iterator[Harness]:
    """The service (controller not started: tests tick it) behind a real HTTP server."""
    data: dict[str, Any] = {
        "store": {"url": db_url},
        "controller": {"targets": ["local", "kubernetes"]},
        **(config or {}),
    }
    kwargs: dict[str, Any] = {"run": run or FakeRun(), "holder": holder}
    if clock is not None:
        kwargs["clock"] = clock
    env = environ or {}
    svc = build_service(parse_service_config(data, environ=env), environ=env, **kwargs)
    try:
        tokens = {
            name: issue_token(svc.store, name, roles, actor="tests").token
            for name, roles in PEOPLE.items()
        }
        server = ApiServer(create_app(svc)).start()
        harness = Harness(svc, server.url, tokens)
        try:
            yield harness
        finally:
            harness.http.close()
            server.stop()
    finally:
        svc.stop()
