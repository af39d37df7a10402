"""`gatekeeper history` reads a SQLite store at the schema's head with sqlite3, and gives the
same rows as the full store; anything else goes through the full store."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.domain.release import Phase
from gatekeeper.engine.control import full_history
from gatekeeper.engine.history import history
from gatekeeper.store.lite import list_releases, sqlite_path
from gatekeeper.store.sql import SqlStore
from tests.unit.test_store import release

T = datetime(2026, 11, 20, 12, 0, 0, 123_456, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    with SqlStore.open(url) as store:
        for i, (app, phase) in enumerate(
            [("shop", Phase.PROMOTED), ("cart", Phase.ROLLED_BACK), ("shop", Phase.ABORTED),
             ("shop", Phase.RUNNING)]
        ):  # fmt: skip
            store.create_release(release(f"2.{i}.0", app=app, phase=phase, at=T + timedelta(i)))
        store.set_phase("shop-production-2.3.0", Phase.HOLDING, "waiting for [bold]approval")
    return url


@pytest.mark.parametrize("app", [None, "shop", "cart", "none"])
def test_the_light_read_gives_the_full_stores_rows(url: str, app: str | None) -> None:
    rows = list_releases(url, app)
    assert rows is not None
    assert rows == full_history(app, url)
    assert history(app, url) == rows


def test_newest_first_and_limited(url: str) -> None:
    rows = list_releases(url, None, limit=2)
    assert rows is not None
    assert [r["release"] for r in rows] == ["shop-production-2.3.0", "shop-production-2.2.0"]
    assert rows[0]["phase"] == "holding" and rows[0]["created_at"].endswith("+00:00")


def test_a_schema_behind_the_head_goes_through_the_full_store(url: str) -> None:
    path = sqlite_path(url)
    assert path is not None
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert list_releases(url, None) is None


@pytest.mark.parametrize(
    "other",
    ["postgresql+psycopg://u@127.0.0.1:1/db", "sqlite:///:memory:", "sqlite:////no/such/file.db"],
)
def test_other_stores_answer_none(other: str) -> None:
    assert list_releases(other, None) is None
