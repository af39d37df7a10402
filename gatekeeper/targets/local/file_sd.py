"""Prometheus file-based service discovery: the versions the local target runs, as scrape targets.

A Prometheus configured with

    scrape_configs:
      - job_name: gatekeeper-local
        file_sd_configs:
          - files: [<state dir>/file_sd.json]

follows the versions as they start and stop. The file is replaced atomically, so
Prometheus never reads half of it. Identity labels (``app``, ``version``) come from the
services' own metrics; do not repeat them here, or Prometheus renames the scraped ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from gatekeeper.domain.errors import InvalidInput

from .router import write_json_atomic

_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def file_sd_groups(
    endpoints: Iterable[str], labels: Mapping[str, str] | None = None
) -> list[dict[str, object]]:
    """The file_sd document: one target group with every endpoint (none: an empty list)."""
    targets = []
    for endpoint in endpoints:
        m = _ENDPOINT.match(endpoint)
        if not m or not 0 < int(m.group(2)) <= 65535:
            raise InvalidInput(f"file_sd endpoint {endpoint!r} is not host:port")
        if endpoint not in targets:
            targets.append(endpoint)
    clean: dict[str, str] = {}
    for name, value in (labels or {}).items():
        if not _LABEL.match(name) or name.startswith("__"):
            raise InvalidInput(
                f"file_sd label {name!r} is not a valid Prometheus label name "
                "(letters, digits and _, not starting with a digit or __)"
            )
        clean[name] = str(value)
    if not targets:
        return []
    return [{"targets": targets, "labels": clean}]


def write_file_sd(
    path: Path, endpoints: Iterable[str], labels: Mapping[str, str] | None = None
) -> None:
    """Write ``endpoints`` (host:port) with ``labels`` to ``path`` in Prometheus file_sd JSON."""
    write_json_atomic(Path(path), file_sd_groups(endpoints, labels))
