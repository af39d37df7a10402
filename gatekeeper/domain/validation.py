"""Validation errors in words: the file, the field, the value and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


def pattern_text(value: Any, pattern: str, words: Mapping[str, str]) -> str:
    """A value refused by a field's pattern, with what the pattern asks for in words."""
    wanted = words.get(pattern)
    if wanted is None:  # a pattern without words still names the value
        return f"{value!r} does not match {pattern}"
    return f"{value!r} is not {wanted}"


def error_text(e: ValidationError, source: str, words: Mapping[str, str]) -> str:
    """One line per error: ``source: field.path: what is wrong``."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = re.sub(r"^Value error, ", "", err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif err["type"] == "union_tag_invalid":
            msg = msg.replace("Input tag", "type")
        elif err["type"] == "string_pattern_mismatch":
            msg = pattern_text(err["input"], err.get("ctx", {}).get("pattern", ""), words)
        lines.append(f"{source}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)
