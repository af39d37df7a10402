"""The store tells a schema at head without Alembic, and still migrates one that is not."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text

from gatekeeper.store import heads as heads_module
from gatekeeper.store.sql import MIGRATIONS, SqlStore, script_heads


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    return config


def current_heads(store: SqlStore) -> set[str]:
    with store.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert script_heads() == heads


def script(revision: str, down: str) -> str:
    return f'"""A migration."""\n\nrevision: str = {revision}\ndown_revision = {down}\n'


FIRST = {"a.py": script('"1"', "None")}
TWO_HEADS = {**FIRST, "b.py": script('"2a"', '"1"'), "c.py": script('"2b"', '"1"')}


@pytest.mark.parametrize(
    ("scripts", "heads"),
    [
        pytest.param({**FIRST, "b.py": script('"2"', '"1"')}, {"2"}, id="linear"),
        pytest.param(TWO_HEADS, {"2a", "2b"}, id="two-heads"),
        pytest.param({**TWO_HEADS, "d.py": script('"3"', '("2a", "2b")')}, {"3"}, id="merged"),
        pytest.param({**FIRST, "__init__.py": "", "notes.txt": "x"}, {"1"}, id="not-scripts"),
        pytest.param({"a.py": script("make_id()", "None")}, set(), id="not-a-literal"),
        pytest.param({"a.py": script('"1"', "None") + "depends_on = 'x'\n"}, set(), id="depends"),
        pytest.param({"a.py": "revision = (\n"}, set(), id="syntax-error"),
    ],
)
def test_the_heads_are_read_from_plain_literals_and_left_to_alembic_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: dict[str, str], heads: set[str]
) -> None:
    for name, body in scripts.items():
        (tmp_path / name).write_text(body)
    monkeypatch.setattr(heads_module, "VERSIONS", tmp_path)
    assert script_heads() == heads


def test_a_store_one_revision_behind_is_migrated_to_the_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    scripts = ScriptDirectory.from_config(alembic_config())
    revisions = [r.revision for r in scripts.walk_revisions()]  # newest first
    assert len(revisions) >= 2, "needs a migration after the first to test with"
    command.upgrade(alembic_config(url), revisions[1])
    with SqlStore.open(url) as store:
        assert current_heads(store) == set(scripts.get_heads())


def test_a_store_with_an_unknown_revision_is_left_to_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    with SqlStore.open(url) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'elsewhere'"))
    with pytest.raises(CommandError, match="elsewhere"):  # Alembic's, not the fast path's
        SqlStore.open(url)
