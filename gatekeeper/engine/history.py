"""`gatekeeper history`: past and current releases, newest first, read as lightly as possible.

A SQLite store at the schema's head is read with the standard library (no SQLAlchemy
import: the command starts in a fraction of the time); any other store through the full
store. Both give the same rows.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.store.factory import default_url
from gatekeeper.store.lite import list_releases


def history(app: str | None, db_url: str | None) -> list[dict[str, Any]]:
    rows = list_releases(db_url or default_url(), app)
    if rows is not None:
        return rows
    from .control import full_history

    return full_history(app, db_url)
