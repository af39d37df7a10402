"""Durations as people write them ("90s", "2m", "1h30m") and as PromQL wants them."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError naming the text."""
    if isinstance(text, bool):
        raise ValueError(f"duration {text!r} is not a duration")
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise ValueError(f"duration {text!r} is not a finite number of seconds")
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return float(text)
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(
            f"duration {text!r} is not a duration: use a number with ms, s, m, h or d, "
            'such as "30s", "2m" or "1h30m"'
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact form: 120 -> "2m", 90 -> "1m30s", 0.5 -> "500ms"."""
    ms = round(seconds * 1000) if seconds > 0 else 0
    if ms <= 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    rest = ms // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


SMALLEST_SCALED = 0.001  # a positive duration compressed stays at least a millisecond


def compressed(seconds: float, factor: float) -> float:
    """``seconds`` divided by a time scale ``factor``, on whole milliseconds (as written
    back it reads the same): the one rule for plans, gates and hold timeouts."""
    if seconds <= 0:
        return 0.0
    if factor == 1:
        return seconds
    return parse_duration(format_duration(max(seconds / factor, SMALLEST_SCALED)))


def human_duration(seconds: float) -> str:
    """For people: "2m", "1m30s", "6.6s", "450ms" (rounded where exactness does not matter)."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60 and abs(seconds - round(seconds)) > 0.05:
        return f"{seconds:.1f}s"
    return format_duration(round(seconds))


def promql_duration(seconds: float) -> str:
    """A range-selector duration PromQL accepts (milliseconds when not whole seconds)."""
    return format_duration(seconds)


def _coerce(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
]
"""A pydantic field type: accepts "2m" or seconds, holds seconds, serializes as "2m"."""
