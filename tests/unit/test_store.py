"""The SQL store: schema, releases, exactly-once steps, audit, approvals, gates, target state."""

from __future__ import annotations

import io
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.store import sql as sql_module
from gatekeeper.store.base import Approval, Event, ReleaseRecord, Store
from gatekeeper.store.factory import open_store
from gatekeeper.store.migrations.versions import v0001_initial
from gatekeeper.store.models import FINAL_PHASES, Base
from gatekeeper.store.sql import MIGRATIONS, PG_POOL_SIZE, SqlStore, normalise_url

PG_URL = os.environ.get("GATEKEEPER_TEST_PG_URL", "").strip()

POSTGRES = pytest.mark.postgres
# Under CI (`make test` runs the suite inside scripts/with-postgres) a missing server is a
# failure, never a silent skip.
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
            POSTGRES,
            pytest.mark.skipif(
                not PG_URL,
                reason="set GATEKEEPER_TEST_PG_URL=postgresql+psycopg://user:pw@host/db to run",
            ),
        ],
    ),
]

TABLES = {"releases", "step_log", "events", "gate_results", "approvals", "target_state"}
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a schema of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gatekeeper.db'}"
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


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    opened = SqlStore.open(url)
    yield opened
    opened.close()


@pytest.fixture
def other(url: str, store: SqlStore) -> Iterator[SqlStore]:
    """A second store on the same database: its own engine and connections, as another process."""
    opened = SqlStore.open(url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gatekeeper.db'}"


def release(
    version: str = "2.0.0",
    *,
    app: str = "shop",
    environment: str = "production",
    phase: Phase = Phase.RUNNING,
    at: datetime = T0,
) -> ReleaseRecord:
    return ReleaseRecord(
        release_id=f"{app}-{environment}-{version}",
        app=app,
        environment=environment,
        version=version,
        stable_version="1.0.0",
        strategy="canary",
        expedited=False,
        spec={"app": app, "version": version, "strategy": {"type": "canary", "steps": [5, 100]}},
        plan={"steps": [{"name": "deploy", "kind": "deploy"}, {"name": "shift-5", "weight": 5}]},
        phase=phase,
        reason="",
        created_at=at,
        updated_at=at,
    )


def steps_logged(store: SqlStore, release_id: str) -> list[tuple[int, str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            text('SELECT "index", name, outcome FROM step_log WHERE release_id = :r ORDER BY 1'),
            {"r": release_id},
        )
        return [(int(i), str(n), str(o)) for i, n, o in rows]


def in_threads(count: int, work: Callable[[int], None]) -> list[BaseException | None]:
    """Run ``work(i)`` in ``count`` threads released together; the exception of each, or None."""
    barrier = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as e:  # collected for the test to judge
            outcomes[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


# Schema and migrations


def test_migrations_create_the_schema(store: SqlStore) -> None:
    inspector = inspect(store.engine)
    assert TABLES <= set(inspector.get_table_names())

    columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in TABLES}
    assert columns["releases"] == {
        "id", "app", "environment", "version", "stable_version", "strategy", "expedited",
        "spec", "plan", "phase", "reason", "next_step", "created_at", "updated_at", "stopped",
        "submitted_by", "stalled",
    }  # fmt: skip
    assert columns["step_log"] == {"release_id", "index", "name", "outcome", "at"}
    assert columns["events"] == {"id", "release_id", "at", "kind", "message", "actor", "data"}
    assert columns["gate_results"] == {
        "id", "release_id", "at", "gate", "verdict", "value", "threshold", "window_s",
        "requests", "reason", "labels",
    }  # fmt: skip
    assert columns["approvals"] == {
        "id", "release_id", "step", "approver", "role", "at", "comment"
    }  # fmt: skip
    assert columns["target_state"] == {"release_id", "state", "updated_at"}

    assert inspector.get_pk_constraint("step_log")["constrained_columns"] == ["release_id", "index"]
    assert inspector.get_pk_constraint("target_state")["constrained_columns"] == ["release_id"]
    indexes = {i["name"]: i for i in inspector.get_indexes("releases")}
    assert indexes["ix_releases_app_environment"]["column_names"] == ["app", "environment"]
    assert indexes["uq_releases_active_app_environment"]["unique"]
    for table in ("events", "gate_results"):
        names = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
        assert names[f"ix_{table}_release_id_at"] == ["release_id", "at"]
    uniques = inspector.get_unique_constraints("approvals")
    assert [u["column_names"] for u in uniques] == [["release_id", "step", "approver"]]
    for table in TABLES - {"releases"}:
        (fk,) = inspector.get_foreign_keys(table)
        assert fk["referred_table"] == "releases" and fk["constrained_columns"] == ["release_id"]

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head == "0004"


def test_models_match_the_migrations(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_the_migration_knows_the_final_phases() -> None:
    domain = {p.value for p in Phase if p.final}
    assert set(v0001_initial.FINAL_PHASES) == set(FINAL_PHASES) == domain


def test_the_migration_renders_for_postgresql_without_a_server() -> None:
    out = io.StringIO()
    config = Config(output_buffer=out)
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://gatekeeper@localhost/gk")
    command.upgrade(config, "head", sql=True)
    ddl = out.getvalue()
    assert "CREATE TABLE releases" in ddl
    assert "created_at TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    assert "value DOUBLE PRECISION" in ddl
    assert "id BIGSERIAL NOT NULL" in ddl
    assert "CREATE UNIQUE INDEX uq_releases_active_app_environment" in ddl
    assert "WHERE phase NOT IN ('promoted', 'rolled_back', 'aborted', 'failed')" in ddl


def test_opening_again_keeps_the_data(url: str, store: SqlStore) -> None:
    store.create_release(release())
    with SqlStore.open(url) as again:
        assert again.get_release(release().release_id) == release()


# Releases


def test_create_get_and_list_releases(store: SqlStore) -> None:
    first = release("2.0.0", phase=Phase.PROMOTED, at=T0)
    second = release("2.1.0", at=T0 + timedelta(hours=1))
    other_app = release("9.0.0", app="cart", at=T0 + timedelta(hours=2))
    for r in (first, second, other_app):
        store.create_release(r)

    assert store.get_release(second.release_id) == second
    assert store.get_release("nope") is None
    assert store.list_releases() == [other_app, second, first]
    assert store.list_releases(app="shop") == [second, first]
    assert store.list_releases(limit=1) == [other_app]
    assert store.list_releases(app="none") == []
    with pytest.raises(InvalidInput, match="limit 0"):
        store.list_releases(limit=0)


def test_times_come_back_aware_in_utc(store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 14, 0, 0, 5, tzinfo=plus_two)
    store.create_release(release(at=local))
    got = store.get_release(release().release_id)
    assert got is not None
    assert got.created_at == local and got.created_at.tzinfo is UTC
    assert got.created_at.hour == 12 and got.created_at.microsecond == 5


def test_naive_times_are_refused(store: SqlStore) -> None:
    with pytest.raises(InvalidInput, match="created_at .* no time zone"):
        store.create_release(release(at=datetime(2026, 3, 1, 12, 0)))
    assert store.list_releases() == []


def test_spec_that_json_cannot_hold_is_refused(store: SqlStore) -> None:
    with pytest.raises(InvalidInput, match="spec: not storable as JSON"):
        store.create_release(replace(release(), spec={"weight": math.nan}))
    with pytest.raises(InvalidInput, match="plan: not storable as JSON"):
        store.create_release(replace(release(), plan={"at": T0}))
    assert store.get_release(release().release_id) is None


def test_phase_changes(store: SqlStore) -> None:
    r = release(phase=Phase.PENDING)
    store.create_release(r)
    assert store.active_release("shop", "production") == r

    store.set_phase(r.release_id, Phase.HOLDING, "gate error-rate is warning")
    got = store.get_release(r.release_id)
    assert got is not None
    assert got.phase is Phase.HOLDING and got.reason == "gate error-rate is warning"
    assert got.updated_at > r.updated_at and got.created_at == r.created_at
    assert store.active_release("shop", "production") == got

    store.set_phase(r.release_id, Phase.ROLLED_BACK, "gate error-rate failed")
    assert store.active_release("shop", "production") is None
    got = store.get_release(r.release_id)
    assert got is not None and got.phase is Phase.ROLLED_BACK

    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.set_phase("ghost", Phase.RUNNING, "")


def test_one_active_release_per_app_and_environment(store: SqlStore) -> None:
    active = release("2.0.0")
    store.create_release(active)

    with pytest.raises(InvalidInput) as refused:
        store.create_release(release("2.1.0"))
    message = str(refused.value)
    assert "'shop'" in message and "'production'" in message and repr(active.release_id) in message
    assert store.get_release(release("2.1.0").release_id) is None  # nothing written

    # Other environments and other apps are free.
    store.create_release(release("2.1.0", environment="staging"))
    store.create_release(release("2.1.0", app="cart"))
    # A release recorded as already final does not hold the app+env.
    store.create_release(release("1.9.0", phase=Phase.ABORTED))

    store.set_phase(active.release_id, Phase.PROMOTED, "all gates passed")
    store.create_release(release("2.1.0"))
    now_active = store.active_release("shop", "production")
    assert now_active is not None and now_active.version == "2.1.0"


def test_duplicate_release_id_is_refused(store: SqlStore) -> None:
    store.create_release(release(phase=Phase.FAILED))
    with pytest.raises(InvalidInput, match="'shop-production-2.0.0' exists already"):
        store.create_release(release(phase=Phase.PENDING))
    got = store.get_release(release().release_id)
    assert got is not None and got.phase is Phase.FAILED


def test_reviving_a_final_release_beside_an_active_one_is_refused(store: SqlStore) -> None:
    old = release("2.0.0", phase=Phase.PROMOTED)
    new = release("2.1.0")
    store.create_release(old)
    store.create_release(new)
    with pytest.raises(InvalidInput, match=repr(new.release_id)):
        store.set_phase(old.release_id, Phase.RUNNING, "resume")
    got = store.get_release(old.release_id)
    assert got is not None and got.phase is Phase.PROMOTED


def test_the_database_itself_keeps_one_active_release(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers may both pass the check; the partial unique index refuses the second."""
    store.create_release(release("2.0.0"))
    real = sql_module._conflict
    calls: list[str] = []

    def check_misses_the_first_time(session: Any, record: ReleaseRecord) -> InvalidInput | None:
        calls.append(record.release_id)
        return None if len(calls) == 1 else real(session, record)

    monkeypatch.setattr(sql_module, "_conflict", check_misses_the_first_time)
    with pytest.raises(InvalidInput, match="active release 'shop-production-2.0.0'"):
        store.create_release(release("2.1.0"))
    assert len(calls) == 2
    assert store.get_release(release("2.1.0").release_id) is None


def test_concurrent_creates_let_exactly_one_in(store: SqlStore, other: SqlStore) -> None:
    stores = [store, other]
    outcomes = in_threads(8, lambda i: stores[i % 2].create_release(release(f"3.0.{i}")))
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, InvalidInput) for o in outcomes if o is not None)
    assert len(store.list_releases()) == 1


# Exactly-once step accounting


def test_complete_step_advances_once(store: SqlStore) -> None:
    r = release()
    store.create_release(r)

    store.complete_step(r.release_id, 0, "deploy", "candidate up")
    store.complete_step(r.release_id, 0, "deploy", "candidate up")  # replay after a crash

    got = store.get_release(r.release_id)
    assert got is not None and got.next_step == 1 and got.updated_at > r.updated_at
    assert steps_logged(store, r.release_id) == [(0, "deploy", "candidate up")]


def test_complete_step_with_a_stale_index_does_nothing(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    store.complete_step(r.release_id, 0, "deploy", "ok")
    store.complete_step(r.release_id, 1, "shift-5", "5% on the candidate")
    before = store.get_release(r.release_id)

    store.complete_step(r.release_id, 0, "deploy", "second run")

    assert store.get_release(r.release_id) == before
    assert before is not None and before.next_step == 2
    assert steps_logged(store, r.release_id) == [
        (0, "deploy", "ok"),
        (1, "shift-5", "5% on the candidate"),
    ]


def test_complete_step_refuses_to_skip_ahead(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    with pytest.raises(InvalidInput, match="step 2 .* step 0 is next"):
        store.complete_step(r.release_id, 2, "shift-50", "ok")
    with pytest.raises(InvalidInput, match="must be 0 or more"):
        store.complete_step(r.release_id, -1, "deploy", "ok")
    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.complete_step("ghost", 0, "deploy", "ok")
    got = store.get_release(r.release_id)
    assert got is not None and got.next_step == 0
    assert steps_logged(store, r.release_id) == []


def test_complete_step_is_exactly_once_under_concurrency(store: SqlStore, other: SqlStore) -> None:
    r = release()
    store.create_release(r)
    stores = [store, other]
    outcomes = in_threads(
        8, lambda i: stores[i % 2].complete_step(r.release_id, 0, "deploy", f"run {i}")
    )
    assert outcomes == [None] * 8
    got = store.get_release(r.release_id)
    assert got is not None and got.next_step == 1
    assert len(steps_logged(store, r.release_id)) == 1


def test_next_step_given_at_creation_is_kept(store: SqlStore) -> None:
    r = replace(release(), next_step=3)
    store.create_release(r)
    assert store.get_release(r.release_id) == r
    store.complete_step(r.release_id, 3, "shift-50", "ok")
    got = store.get_release(r.release_id)
    assert got is not None and got.next_step == 4


# Audit events


def test_events_round_trip_in_time_order(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    later = Event(r.release_id, T0 + timedelta(seconds=5), "shift", "5% to 2.0.0", data={"w": 5})
    first = Event(r.release_id, T0, "submitted", "release submitted", actor="ci")
    same_time = Event(r.release_id, T0, "step-started", "deploy", data={"nested": {"a": [1, None]}})
    for e in (later, first, same_time):
        store.record_event(e)

    assert store.events(r.release_id) == [first, same_time, later]
    assert store.events(r.release_id)[1].actor == "gatekeeper"
    assert store.events("ghost") == []


def test_events_are_refused_for_unknown_releases_and_bad_data(store: SqlStore) -> None:
    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.record_event(Event("ghost", T0, "submitted", "x"))
    r = release()
    store.create_release(r)
    with pytest.raises(InvalidInput, match="event data: not storable as JSON"):
        store.record_event(Event(r.release_id, T0, "gate", "x", data={"value": math.inf}))
    with pytest.raises(InvalidInput, match="no time zone"):
        store.record_event(Event(r.release_id, datetime(2026, 1, 1), "gate", "x"))
    assert store.events(r.release_id) == []


# Approvals


def test_approvals_round_trip_and_a_repeat_is_ignored(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    first = Approval(r.release_id, "shift-50", "alex", "sre", T0, "looks good")
    store.add_approval(first)
    # The same approver again, for the same step: ignored, the first approval stands.
    store.add_approval(replace(first, at=T0 + timedelta(minutes=1), comment="again", role="x"))
    second = Approval(r.release_id, "shift-50", "sam", "owner", T0 + timedelta(minutes=2))
    other_step = Approval(r.release_id, "shift-100", "alex", "sre", T0 + timedelta(minutes=3))
    store.add_approval(second)
    store.add_approval(other_step)

    assert store.approvals(r.release_id) == [first, second, other_step]
    assert store.approvals("ghost") == []
    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.add_approval(replace(first, release_id="ghost"))


# Gate results


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def assert_same_results(got: list[GateResult], want: list[GateResult]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.gate, g.verdict, g.reason, g.at, g.labels) == (
            w.gate, w.verdict, w.reason, w.at, w.labels
        )  # fmt: skip
        for name in ("value", "threshold", "window_s", "requests"):
            assert _same(getattr(g, name), getattr(w, name)), (name, getattr(g, name))


def test_gate_results_keep_nan_and_infinities(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    results = [
        GateResult("error-rate", Verdict.INCONCLUSIVE, "no traffic", T0, value=math.nan,
                   threshold=0.01, window_s=300.0, requests=0.0, labels={"route": "/"}),
        GateResult("latency-p99", Verdict.FAIL, "unbounded", T0, value=math.inf,
                   threshold=0.5, window_s=60.0, requests=1234.0),
        GateResult("delta", Verdict.PASS, "fine", T0 + timedelta(seconds=1), value=-math.inf,
                   threshold=-0.0, window_s=0.1, requests=5e-324),
        GateResult("saturation", Verdict.WARN, "breaching", T0 + timedelta(seconds=2),
                   value=1 / 3, threshold=1e300),
    ]  # fmt: skip
    store.record_gate_results(r.release_id, results)
    store.record_gate_results(r.release_id, [])

    got = store.gate_results(r.release_id)
    assert_same_results(got, results)
    assert got[1].verdict is Verdict.FAIL and math.isinf(got[1].value or 0.0)
    assert got[0].value is not None and math.isnan(got[0].value)
    assert got[3].window_s is None and got[3].requests is None


def test_gate_results_limit_keeps_the_latest(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    results = [
        GateResult("error-rate", Verdict.PASS, f"tick {i}", T0 + timedelta(seconds=i), value=i)
        for i in range(5)
    ]
    store.record_gate_results(r.release_id, list(reversed(results)))
    assert [g.reason for g in store.gate_results(r.release_id, limit=2)] == ["tick 3", "tick 4"]
    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.record_gate_results("ghost", results)


# Target state


def test_target_state_save_and_load(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    assert store.target_state(r.release_id) is None

    state = {"router_port": 41234, "weights": {"stable": 95, "candidate": 5}, "pids": [1, 2]}
    store.save_target_state(r.release_id, state)
    assert store.target_state(r.release_id) == state

    store.save_target_state(r.release_id, {"weights": {"stable": 0, "candidate": 100}})
    assert store.target_state(r.release_id) == {"weights": {"stable": 0, "candidate": 100}}

    with pytest.raises(InvalidInput, match="'ghost' does not exist"):
        store.save_target_state("ghost", state)


# Two stores on one database, as two processes


def test_a_second_store_sees_the_first_ones_writes(store: SqlStore, other: SqlStore) -> None:
    r = release()
    store.create_release(r)
    assert other.get_release(r.release_id) == r

    other.add_approval(Approval(r.release_id, "shift-50", "alex", "sre", T0))
    assert [a.approver for a in store.approvals(r.release_id)] == ["alex"]

    store.complete_step(r.release_id, 0, "deploy", "ok")
    other.complete_step(r.release_id, 0, "deploy", "ok")
    got = other.get_release(r.release_id)
    assert got is not None and got.next_step == 1

    other.set_phase(r.release_id, Phase.ABORTED, "stopped by a person")
    assert store.active_release("shop", "production") is None


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    with SqlStore.open(sqlite_url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_another_process_can_approve_while_a_release_runs(sqlite_url: str) -> None:
    r = release()
    with SqlStore.open(sqlite_url) as store:
        store.create_release(r)
        store.complete_step(r.release_id, 0, "deploy", "ok")
        script = (
            "import sys\n"
            "from datetime import UTC, datetime\n"
            "from gatekeeper.store.base import Approval\n"
            "from gatekeeper.store.sql import SqlStore\n"
            "with SqlStore.open(sys.argv[1]) as s:\n"
            "    s.add_approval(Approval(sys.argv[2], 'shift-50', 'sam', 'owner',"
            " datetime.now(UTC)))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, sqlite_url, r.release_id],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert done.returncode == 0, done.stderr
        assert [a.approver for a in store.approvals(r.release_id)] == ["sam"]
        store.complete_step(r.release_id, 1, "shift-5", "ok")


def test_a_writer_waits_for_another_and_readers_do_not(sqlite_url: str, tmp_path: Path) -> None:
    r = release()
    with SqlStore.open(sqlite_url) as store:
        store.create_release(r)
        # Another process holds the write lock with an uncommitted change.
        holder = sqlite3.connect(str(tmp_path / "gatekeeper.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE releases SET reason = 'held' WHERE id = ?", (r.release_id,))

        assert store.get_release(r.release_id) == r  # a reader is not blocked

        outcome: list[BaseException | None] = []

        def approve() -> None:
            try:
                store.add_approval(Approval(r.release_id, "shift-50", "alex", "sre", T0))
                outcome.append(None)
            except BaseException as e:  # judged below
                outcome.append(e)

        started = time.monotonic()
        writer = threading.Thread(target=approve)
        writer.start()
        time.sleep(0.5)
        assert outcome == []  # still waiting for the lock
        holder.execute("COMMIT")
        holder.close()
        writer.join(timeout=30)
        assert outcome == [None]
        assert time.monotonic() - started >= 0.5
        assert len(store.approvals(r.release_id)) == 1
        got = store.get_release(r.release_id)
        assert got is not None and got.reason == "held"


def test_opening_a_current_store_needs_no_write_lock(sqlite_url: str, tmp_path: Path) -> None:
    SqlStore.open(sqlite_url).close()
    holder = sqlite3.connect(str(tmp_path / "gatekeeper.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with SqlStore.open(sqlite_url) as store:
            assert store.list_releases() == []
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_in_memory_sqlite_works() -> None:
    with SqlStore.open("sqlite://") as store:
        store.create_release(release())
        store.complete_step(release().release_id, 0, "deploy", "ok")
        got = store.get_release(release().release_id)
        assert got is not None and got.next_step == 1


# URLs and the factory


def test_urls() -> None:
    assert normalise_url("postgresql://u:pw@db/gk").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@db/gk").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@db/gk").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(InvalidInput, match="'mysql' is not supported"):
        SqlStore.open("mysql://u:secret@db/gk")
    with pytest.raises(InvalidInput, match="not a database URL"):
        SqlStore.open("not a url")


def test_a_password_is_not_shown_in_errors() -> None:
    with pytest.raises(InvalidInput) as refused:
        SqlStore.open("mysql://u:secret@db/gk")
    assert "secret" not in str(refused.value)


def test_an_unusable_sqlite_path_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GatekeeperError, match="cannot create"):
        SqlStore.open(f"sqlite:///{blocker / 'sub' / 'gatekeeper.db'}")


def test_open_store_uses_gatekeeper_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "data" / "gk"
    monkeypatch.setenv("GATEKEEPER_HOME", str(home))
    monkeypatch.delenv("GATEKEEPER_DB_URL", raising=False)
    store: Store = open_store()
    try:
        store.create_release(release())
    finally:
        store.close()
    assert (home / "gatekeeper.db").is_file()


def test_open_store_defaults_under_the_users_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GATEKEEPER_HOME", raising=False)
    monkeypatch.delenv("GATEKEEPER_DB_URL", raising=False)
    open_store().close()
    assert (tmp_path / ".local" / "share" / "gatekeeper" / "gatekeeper.db").is_file()


def test_open_store_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GATEKEEPER_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    open_store().close()
    assert (tmp_path / "env.db").is_file()
    assert not (tmp_path / "home" / "gatekeeper.db").exists()

    open_store(f"sqlite:///{tmp_path / 'explicit.db'}").close()
    assert (tmp_path / "explicit.db").is_file()


# -- the phase machine, compare-and-set ---------------------------------------------------------


def test_an_abort_from_another_process_wins_over_the_executors_next_write(
    store: SqlStore, other: SqlStore
) -> None:
    from gatekeeper.domain.phases import PhaseConflict

    r = release()
    store.create_release(r)
    other.set_phase(r.release_id, Phase.ABORTED, "aborted by rm: freeze")
    with pytest.raises(PhaseConflict) as refused:
        store.set_phase(r.release_id, Phase.HOLDING, "holding: latency warns")
    assert refused.value.current is Phase.ABORTED
    got = store.get_release(r.release_id)
    assert got is not None and (got.phase, got.reason) == (Phase.ABORTED, "aborted by rm: freeze")


def test_set_phase_compares_with_the_expected_phases(store: SqlStore) -> None:
    from gatekeeper.domain.phases import PhaseConflict

    r = release(phase=Phase.HOLDING)
    store.create_release(r)
    with pytest.raises(PhaseConflict, match="cannot move from holding to running"):
        store.set_phase(r.release_id, Phase.RUNNING, "approved", expected=[Phase.PENDING])
    store.set_phase(r.release_id, Phase.RUNNING, "approved", expected=[Phase.HOLDING])
    got = store.get_release(r.release_id)
    assert got is not None and got.phase is Phase.RUNNING


def test_stopped_is_a_field_not_reason_text(store: SqlStore) -> None:
    r = release()
    store.create_release(r)
    store.set_phase(r.release_id, Phase.ROLLING_BACK, "no approval after 1h", stopped=True)
    got = store.get_release(r.release_id)
    assert got is not None and got.stopped and got.reason == "no approval after 1h"
    store.set_phase(r.release_id, Phase.ABORTED, "no approval after 1h")
    got = store.get_release(r.release_id)
    assert got is not None and got.stopped  # unchanged when not given


def test_the_upgrade_turns_a_stopped_mark_into_the_field(sqlite_url: str) -> None:
    """A release caught rolling back by the upgrade keeps its intent."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql(
            "INSERT INTO releases (id, app, environment, version, stable_version, strategy, "
            "expedited, spec, plan, phase, reason, next_step, created_at, updated_at) VALUES "
            "('a-b-v2', 'a', 'b', 'v2', 'v1', 'canary', 0, '{}', '{}', 'rolling_back', "
            "'[stopped] no approval', 3, '2026-11-20T12:00:00.000000+00:00', "
            "'2026-11-20T12:00:00.000000+00:00')"
        )
    engine.dispose()
    with SqlStore.open(sqlite_url) as store:
        got = store.get_release("a-b-v2")
    assert got is not None and got.stopped and got.reason == "no approval"


def test_warm_opens_the_pool_before_the_first_request(store: SqlStore, url: str):
    """PostgreSQL's pool holds its connections open once warmed (no backend forked in a
    request); a SQLite file needs one."""
    wanted = PG_POOL_SIZE if url.startswith("postgresql") else 1
    assert store.warm() == wanted
    if url.startswith("postgresql"):
        assert store._engine.pool.checkedin() == PG_POOL_SIZE  # type: ignore[attr-defined]
    assert store.get_release("nothing") is None  # still answers
