"""Alembic migrations of the store's schema, run to head by ``SqlStore.open``."""
