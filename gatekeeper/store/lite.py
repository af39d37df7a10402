"""A read-only look at a SQLite store through the standard library's sqlite3.

For commands that only read (`gatekeeper history`): they then start without importing
SQLAlchemy. Only a SQLite file whose schema is at the migrations' head is read here;
anything else (PostgreSQL, an older schema, no file yet, a locked or broken file) answers
None and the caller goes through the full store, which also migrates.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from .heads import script_heads

_COLUMNS = ("id", "app", "environment", "version", "strategy", "expedited", "phase", "reason",
            "created_at")  # fmt: skip


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL; None for any other store (or in-memory)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :].split("?", 1)[0]
            return Path(rest) if rest and rest != ":memory:" else None
    return None


def list_releases(url: str, app: str | None, limit: int = 100) -> list[dict[str, Any]] | None:
    """Releases newest first, as `gatekeeper history` shows them; None: ask the full store."""
    path = sqlite_path(url)
    heads = script_heads()
    if path is None or not path.is_file() or not heads:
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        found = {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
        if found != heads:
            return None
        where, args = ("WHERE app = ?", [app]) if app is not None else ("", [])
        rows = connection.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM releases {where} "  # noqa: S608 (fixed names)
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return [_row(dict(zip(_COLUMNS, row, strict=True))) for row in rows]


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "release": r["id"],
        "app": r["app"],
        "environment": r["environment"],
        "version": r["version"],
        "strategy": r["strategy"],
        "expedited": bool(r["expedited"]),
        "phase": r["phase"],
        "reason": r["reason"],
        "created_at": datetime.fromisoformat(r["created_at"]).isoformat(),
    }
