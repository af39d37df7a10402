"""open_store: the store from an explicit URL, $GATEKEEPER_DB_URL or the default file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `gatekeeper history` reads the default URL without loading the models
    from .base import Store

DB_URL_VAR = "GATEKEEPER_DB_URL"
HOME_VAR = "GATEKEEPER_HOME"
DEFAULT_HOME = "~/.local/share/gatekeeper"
DB_FILE = "gatekeeper.db"


def gatekeeper_home() -> Path:
    """The data folder: $GATEKEEPER_HOME, else ~/.local/share/gatekeeper (not created here)."""
    return Path(os.environ.get(HOME_VAR) or DEFAULT_HOME).expanduser()


def default_url() -> str:
    """$GATEKEEPER_DB_URL, else a SQLite file in the data folder (the folder is created)."""
    configured = os.environ.get(DB_URL_VAR, "").strip()
    if configured:
        return configured
    home = gatekeeper_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / DB_FILE).resolve()}"


def open_store(url: str | None = None) -> Store:
    """Open (and migrate) the store at ``url``, or at ``default_url()`` when it is None."""
    from .sql import SqlStore  # SQLAlchemy loads when a store opens, not with the engine

    return SqlStore.open(url if url else default_url())
