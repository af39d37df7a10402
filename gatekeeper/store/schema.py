"""The schema's version: migrations to head, and telling "at head" without Alembic."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS = "gatekeeper.store:migrations"
VERSIONS = Path(__file__).parent / "migrations" / "versions"
# Execution option that marks a write transaction (BEGIN IMMEDIATE on SQLite).
_WRITE = "gatekeeper_write"


def script_heads() -> set[str]:
    """The head revisions of the migration scripts, read from their text, without Alembic.

    The revisions no script names as its down_revision. Empty, meaning "ask Alembic", when
    a script does not spell its revisions as plain literals or uses depends_on.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        if path.name.startswith(("__init__", ".#")):  # the files Alembic skips
            continue
        names: dict[str, ast.expr] = {}
        try:
            body = ast.parse(path.read_text(encoding="utf-8")).body
        except SyntaxError:
            return set()
        for node in body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name):
                names[target.id] = value
        if "revision" not in names:
            continue
        none = ast.Constant(None)
        try:
            revision = ast.literal_eval(names["revision"])
            down = ast.literal_eval(names.get("down_revision", none))
            depends_on = ast.literal_eval(names.get("depends_on", none))
        except ValueError:
            return set()
        downs = down if isinstance(down, tuple | list) else () if down is None else (down,)
        if not isinstance(revision, str) or depends_on is not None:
            return set()
        if not all(isinstance(d, str) for d in downs):
            return set()
        revisions.add(revision)
        parents.update(downs)
    return revisions - parents


def _at_head(engine: Engine) -> bool:
    """Whether the schema is at the scripts' head, told by one query, without Alembic."""
    heads = script_heads()
    if not heads:
        return False
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return set(found) == heads


def migrate(engine: Engine) -> None:
    """Run the Alembic migrations to head, in one write transaction (none when at head).

    A store already at head, the usual case, is told without importing Alembic: that
    import alone costs a CLI command several hundred milliseconds.
    """
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        if set(MigrationContext.configure(connection).get_current_heads()) == heads:
            return
    with engine.execution_options(**{_WRITE: True}).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
