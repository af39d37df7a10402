"""Command templates: the argument vector of one version, from its template and its port.

Templates run without a shell (``shlex.split``), with these placeholders: ``{port}``
(required; a free loopback port), ``{app}``, ``{version}`` and ``{python}`` (the
interpreter running the router).
"""

from __future__ import annotations

import re
import shlex
import sys

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import VERSION

PLACEHOLDERS = ("{port}", "{app}", "{version}", "{python}")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_VERSION = re.compile(VERSION)


def fill_command(
    template: str, *, port: int, app: str, version: str, python: str | None = None
) -> list[str]:
    """The argument vector for one version: ``template`` split like a shell would (without
    running one), then ``{port}``, ``{app}``, ``{version}`` and ``{python}`` filled in."""
    if "{port}" not in template:
        raise InvalidInput(
            f"command {template!r} must take {{port}}: the local target chooses each "
            "version's port and passes it in"
        )
    try:
        tokens = shlex.split(template)
    except ValueError as e:
        raise InvalidInput(f"command {template!r} cannot be split into arguments: {e}") from None
    if not tokens:
        raise InvalidInput("command is empty")
    values = {
        "{port}": str(port),
        "{app}": app,
        "{version}": version,
        "{python}": python or sys.executable,
    }
    argv = []
    for token in tokens:
        unknown = [p for p in _PLACEHOLDER.findall(token) if p not in values]
        if unknown:
            raise InvalidInput(
                f"command {template!r}: unknown placeholder {unknown[0]}; "
                f"allowed: {', '.join(PLACEHOLDERS)}"
            )
        for key, value in values.items():
            token = token.replace(key, value)
        argv.append(token)
    return argv


def check_version(version: str) -> None:
    """A version the target can run (it names log files and fills ``{version}``)."""
    if not _VERSION.match(version):
        raise InvalidInput(f"version {version!r} does not match {VERSION}")
