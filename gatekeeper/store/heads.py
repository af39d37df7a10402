"""The migration scripts' head revisions, read from their text: no Alembic, no SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

VERSIONS = Path(__file__).parent / "migrations" / "versions"


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
