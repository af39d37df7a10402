"""The schema's version: migrations to head, and telling "at head" without Alembic."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from .heads import script_heads

MIGRATIONS = "gatekeeper.store:migrations"
__all__ = ["MIGRATIONS", "migrate", "script_heads"]
# Execution option that marks a write transaction (BEGIN IMMEDIATE on SQLite).
_WRITE = "gatekeeper_write"


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
