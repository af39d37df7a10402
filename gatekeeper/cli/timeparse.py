"""Times on the command line: RFC 3339, or relative to now ("now", "now-2h")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gatekeeper.domain.durations import parse_duration
from gatekeeper.domain.errors import InvalidInput


def parse_time(text: str, *, now: datetime | None = None, field: str = "time") -> datetime:
    now = now or datetime.now(UTC)
    s = text.strip()
    if s == "now":
        return now
    if s.startswith("now-"):
        try:
            return now - timedelta(seconds=parse_duration(s[4:]))
        except ValueError as e:
            raise InvalidInput(f"{field} {text!r}: {e}") from e
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        try:
            return datetime.fromtimestamp(float(s), UTC)
        except ValueError:
            raise InvalidInput(
                f"{field} {text!r} is not a time: use RFC 3339 (2026-11-20T14:00:00Z), "
                "a Unix timestamp, or now-2h"
            ) from None
    if t.tzinfo is None:
        raise InvalidInput(f"{field} {text!r} has no time zone: add Z or +00:00")
    return t.astimezone(UTC)
