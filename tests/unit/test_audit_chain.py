"""The audit log's hash chain on SQLite and PostgreSQL: tampering is found, appends never fork."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from gatekeeper.cli.audit_cmd import EXIT_AUDIT_BROKEN
from gatekeeper.cli.main import app
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.engine import audit
from gatekeeper.store.audit_chain import (
    GENESIS,
    AuditEntry,
    AuditHead,
    AuditRecord,
    entry_hash,
    verify_chain,
)
from gatekeeper.store.sql import SqlStore, normalise_url
from tests.support.fakes import FakeClock
from tests.unit.test_store import BACKENDS, PG_URL, in_threads

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a schema of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gatekeeper.db'}"
        return
    base = normalise_url(PG_URL)
    schema = f"gk_audit_{uuid.uuid4().hex[:12]}"
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


def entry(i: int, release: str | None = "shop-production-v2") -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=i),
        actor=f"user-{i % 3}",
        action=("submit", "approve", "step", "verdict-change", "rollback")[i % 5],
        release_id=release,
        detail={"i": i, "reason": "ünïcode, ratio 0.061", "nested": {"ok": True, "n": [1, 2.5]}},
    )


def fill(store: SqlStore, count: int = 6) -> list[AuditRecord]:
    return [store.append_audit(entry(i)) for i in range(1, count + 1)]


def sql(store: SqlStore, statement: str, **params: object) -> None:
    """Tamper with the table directly, as someone with write access to the database would."""
    with store.engine.begin() as connection:
        connection.execute(text(statement), params)


def set_detail(store: SqlStore, seq: int, detail: str) -> None:
    cast = "CAST(:d AS JSON)" if store.engine.dialect.name == "postgresql" else ":d"
    sql(store, f"UPDATE audit_log SET detail = {cast} WHERE seq = :s", d=detail, s=seq)


# The chain as written


def test_appends_are_numbered_and_linked_from_genesis(store: SqlStore) -> None:
    written = fill(store, 4)
    assert [r.seq for r in written] == [1, 2, 3, 4]
    assert written[0].prev_hash == GENESIS
    for before, after in zip(written, written[1:], strict=False):
        assert after.prev_hash == before.hash
    assert store.audit_entries() == written
    assert store.audit_head() == AuditHead(4, written[-1].hash)
    report = store.verify_audit()
    assert report.ok and report.entries == 4 and report.end == store.audit_head()


def test_an_empty_log_verifies_and_its_head_is_genesis(store: SqlStore) -> None:
    assert store.audit_head() == AuditHead(0, GENESIS)
    report = store.verify_audit()
    assert report.ok and report.entries == 0


def test_the_hash_is_sha256_of_the_documented_canonical_json() -> None:
    at = datetime(2026, 3, 1, 13, 0, 0, 5, tzinfo=UTC)
    body = (
        '{"action":"approve","actor":"bob","at":"2026-03-01T13:00:00.000005+00:00",'
        '"detail":{"a":[1,"é"],"b":null},"prev_hash":"' + GENESIS + '",'
        '"release_id":"shop-production-v2","seq":1}'
    )
    want = hashlib.sha256(body.encode("utf-8")).hexdigest()
    got = entry_hash(
        1, at, "bob", "approve", "shop-production-v2", {"b": None, "a": [1, "é"]}, GENESIS
    )
    assert got == want


def test_entries_filter_by_release_and_page_by_seq(store: SqlStore) -> None:
    for i in range(1, 7):
        store.append_audit(entry(i, release="shop-production-v2" if i % 2 else None))
    assert [e.seq for e in store.audit_entries("shop-production-v2")] == [1, 3, 5]
    assert [e.seq for e in store.audit_entries(after_seq=2, limit=3)] == [3, 4, 5]
    with pytest.raises(InvalidInput, match="limit 0"):
        store.audit_entries(limit=0)


def test_bad_entries_are_refused_and_leave_the_chain_as_it_was(store: SqlStore) -> None:
    fill(store, 2)
    head = store.audit_head()
    for bad, message in [
        (AuditEntry(T0, " ", "approve"), "actor is empty"),
        (AuditEntry(T0, "bob", ""), "action is empty"),
        (AuditEntry(T0.replace(tzinfo=None), "bob", "approve"), "has no time zone"),
        (AuditEntry(T0, "bob", "approve", None, {"x": float("nan")}), "not storable as JSON"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            store.append_audit(bad)
    assert store.audit_head() == head and store.verify_audit().ok


def test_record_stamps_the_time_and_keeps_the_detail(store: SqlStore) -> None:
    clock = FakeClock(T0)
    done = audit.record(
        store, "alice", "approve", "shop-production-v2", {"step": "approve-promote"}, clock=clock
    )
    assert (done.seq, done.at, done.detail) == (1, T0, {"step": "approve-promote"})
    assert audit.head(store) == AuditHead(1, done.hash)


# Tampering, each found and named by seq


def test_an_edited_entry_is_found(store: SqlStore) -> None:
    fill(store)
    set_detail(store, 3, '{"i": 3, "reason": "nothing to see"}')
    problem = store.verify_audit().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "edited")
    assert problem.message.startswith("entry 3 was edited: stored hash ")


def test_an_edited_actor_is_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 5")
    problem = store.verify_audit().problem
    assert problem is not None and (problem.seq, problem.kind) == (5, "edited")


def test_a_deleted_entry_is_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "DELETE FROM audit_log WHERE seq = 3")
    problem = store.verify_audit().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "deleted")
    assert problem.message == "entry 3 deleted: the chain goes from entry 2 to entry 4"


def test_deleting_the_first_entries_is_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "DELETE FROM audit_log WHERE seq <= 2")
    problem = store.verify_audit().problem
    assert problem is not None
    assert problem.message == "entries 1-2 deleted: the chain starts to entry 3"


def test_swapped_entries_are_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "UPDATE audit_log SET seq = -4 WHERE seq = 4")
    sql(store, "UPDATE audit_log SET seq = 4 WHERE seq = 3")
    sql(store, "UPDATE audit_log SET seq = 3 WHERE seq = -4")
    problem = store.verify_audit().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "reordered")
    assert "entry 3 holds the entry written as seq 4" in problem.message


def test_a_deleted_and_renumbered_entry_is_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "DELETE FROM audit_log WHERE seq = 3")
    for seq in (4, 5, 6):
        sql(store, "UPDATE audit_log SET seq = :n WHERE seq = :s", n=seq - 1, s=seq)
    sql(store, "UPDATE audit_head SET seq = 5")
    problem = store.verify_audit().problem
    assert problem is not None and (problem.seq, problem.kind) == (3, "reordered")


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link(store: SqlStore) -> None:
    written = fill(store)
    old = written[2]
    fresh = entry_hash(3, old.at, "mallory", old.action, old.release_id, old.detail, old.prev_hash)
    sql(store, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 3", h=fresh)
    problem = store.verify_audit().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "unlinked")
    assert "entry 3 was rewritten or replaced" in problem.message


def test_a_deleted_tail_is_found_by_the_head_row(store: SqlStore) -> None:
    fill(store)
    sql(store, "DELETE FROM audit_log WHERE seq >= 5")
    problem = store.verify_audit().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (5, "truncated")
    assert "the chain ends at entry 4 but the head says entry 6 is the last" in problem.message


def test_a_deleted_tail_with_the_head_rewritten_needs_an_anchor(store: SqlStore) -> None:
    written = fill(store)
    anchor = store.audit_head()
    sql(store, "DELETE FROM audit_log WHERE seq >= 5")
    sql(store, "UPDATE audit_head SET seq = 4, hash = :h", h=written[3].hash)
    assert store.verify_audit().ok  # what the README says: not detectable from inside
    problem = store.verify_audit(anchor).problem
    assert problem is not None and (problem.seq, problem.kind) == (5, "truncated")
    assert "before the anchored entry 6" in problem.message


def test_a_recomputed_chain_is_found_only_by_an_anchor(store: SqlStore) -> None:
    written = fill(store)
    anchor = AuditHead(4, written[3].hash)
    prev = written[1].hash
    for old in written[2:]:  # rewrite entry 3 and recompute everything after it
        actor = "mallory" if old.seq == 3 else old.actor
        digest = entry_hash(old.seq, old.at, actor, old.action, old.release_id, old.detail, prev)
        sql(
            store,
            "UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s",
            a=actor,
            p=prev,
            h=digest,
            s=old.seq,
        )
        prev = digest
    sql(store, "UPDATE audit_head SET hash = :h", h=prev)
    assert store.verify_audit().ok
    problem = store.verify_audit(anchor).problem
    assert problem is not None and (problem.seq, problem.kind) == (4, "anchor")


def test_an_edited_head_row_is_found(store: SqlStore) -> None:
    fill(store)
    sql(store, "UPDATE audit_head SET hash = :h", h="f" * 64)
    problem = store.verify_audit().problem
    assert problem is not None and (problem.seq, problem.kind) == (6, "head")


def test_an_entry_written_around_the_lock_is_found(store: SqlStore) -> None:
    written = fill(store, 3)
    sql(
        store,
        "UPDATE audit_head SET seq = 2, hash = :h",
        h=written[1].hash,
    )
    problem = store.verify_audit().problem
    assert problem is not None and (problem.seq, problem.kind) == (3, "head")


def test_the_walk_stops_at_the_first_problem() -> None:
    records = [
        AuditRecord(1, T0, "a", "submit", None, {}, GENESIS, "bad"),
        AuditRecord(3, T0, "a", "submit", None, {}, "x", "y"),
    ]
    report = verify_chain(records, AuditHead(3, "y"))
    assert report.problem is not None and report.problem.seq == 1 and report.entries == 0


# Two writers at once


def test_concurrent_appends_from_two_stores_make_one_unbroken_chain(url: str) -> None:
    stores = [SqlStore.open(url), SqlStore.open(url)]
    per_writer = 40
    try:

        def work(i: int) -> None:
            for n in range(per_writer):
                stores[i].append_audit(entry(n, release=f"writer-{i}"))

        assert in_threads(2, work) == [None, None]
        report = stores[0].verify_audit()
        assert report.ok, report.problem
        assert report.entries == 2 * per_writer
        seqs = [e.seq for e in stores[1].audit_entries(limit=1000)]
        assert seqs == list(range(1, 2 * per_writer + 1))
        writers = {e.release_id for e in stores[1].audit_entries(limit=1000)}
        assert writers == {"writer-0", "writer-1"}
    finally:
        for s in stores:
            s.close()


APPENDER = """
import sys
from datetime import UTC, datetime
from gatekeeper.store.audit_chain import AuditEntry
from gatekeeper.store.sql import SqlStore
store = SqlStore.open(sys.argv[1])
for n in range(int(sys.argv[3])):
    store.append_audit(AuditEntry(datetime.now(UTC), sys.argv[2], "step", None, {"n": n}))
store.close()
"""


def test_concurrent_appends_from_two_processes_make_one_unbroken_chain(
    url: str, store: SqlStore
) -> None:
    per_process = 30
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, f"replica-{i}", str(per_process)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in processes:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    report = store.verify_audit()
    assert report.ok, report.problem
    assert report.entries == 2 * per_process


# The command line


def test_audit_verify_exits_0_when_intact_and_6_naming_the_entry_when_broken(
    url: str, store: SqlStore
) -> None:
    fill(store)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db", url])
    assert ok.exit_code == 0, ok.output
    assert "audit log intact: 6 entries, head 6:" in ok.output

    head = runner.invoke(app, ["audit", "head", "--db", url])
    assert head.exit_code == 0 and head.stdout.strip() == str(store.audit_head())

    sql(store, "DELETE FROM audit_log WHERE seq = 2")
    broken = runner.invoke(app, ["audit", "verify", "--db", url])
    assert broken.exit_code == EXIT_AUDIT_BROKEN == 6
    assert "audit chain broken at entry 2 (deleted)" in broken.output
    as_json = runner.invoke(app, ["audit", "verify", "--db", url, "--json"])
    assert as_json.exit_code == 6
    assert '"kind": "deleted"' in as_json.stdout and '"seq": 2' in as_json.stdout

    bad = runner.invoke(app, ["audit", "verify", "--db", url, "--anchor", "6:xyz"])
    assert bad.exit_code == 2 and "is not SEQ:HASH" in bad.output


def test_audit_verify_with_an_anchor_on_the_command_line(url: str, store: SqlStore) -> None:
    written = fill(store)
    anchor = str(store.audit_head())
    sql(store, "DELETE FROM audit_log WHERE seq = 6")
    sql(store, "UPDATE audit_head SET seq = 5, hash = :h", h=written[4].hash)
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "verify", "--db", url]).exit_code == 0
    anchored = runner.invoke(app, ["audit", "verify", "--db", url, "--anchor", anchor])
    assert anchored.exit_code == 6
    assert "audit chain broken at entry 6 (truncated)" in anchored.output


def test_audit_list_shows_one_releases_entries(url: str, store: SqlStore) -> None:
    store.append_audit(entry(1, release="shop-production-v2"))
    store.append_audit(entry(2, release="cart-production-v7"))
    runner = CliRunner()
    listed = runner.invoke(
        app, ["audit", "list", "--db", url, "--release", "cart-production-v7", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert '"release_id": "cart-production-v7"' in listed.stdout
    assert "shop-production-v2" not in listed.stdout
