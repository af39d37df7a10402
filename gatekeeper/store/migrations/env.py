"""Alembic environment: migrates the connection ``SqlStore.open`` hands over, or a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

# Key of the PostgreSQL advisory lock that lets one process at a time migrate.
_MIGRATION_LOCK = 0x67617465  # "gate"


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        context.run_migrations()


def _offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as own:
            _migrate(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _offline()
else:
    _online()
