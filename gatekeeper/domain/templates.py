"""Query templates: which variables a gate's PromQL may use, and where they stand safely.

Templates use ``$name`` or ``${name}`` placeholders. Label values (app, namespace,
version, baseline_version, workload) may only stand inside a double-quoted string,
where they are escaped (and regex-quoted inside ``=~``/``!~`` matchers); ``$window``
must stand outside strings. Checked when a gate spec is read; filled by gates/promql.py.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

LABEL_VARIABLES = ("app", "namespace", "version", "baseline_version", "workload")
DURATION_VARIABLES = ("window",)
VARIABLES = LABEL_VARIABLES + DURATION_VARIABLES

_PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _placeholders(template: str) -> list[tuple[str, int, str | None, bool]]:
    """(name, position, enclosing quote or None, inside a regex matcher) per placeholder.

    Walks PromQL's string and comment syntax: a ``#`` outside strings starts a comment
    that runs to the end of the line, and quotes inside it open no string. A
    double-quoted string is a regex when the token before it (whitespace skipped) is
    ``=~`` or ``!~``: its content is RE2 as well as a string, so a value there needs
    both escapings.
    """
    found: list[tuple[str, int, str | None, bool]] = []
    quote: str | None = None
    regex = False
    i = 0
    while i < len(template):
        ch = template[i]
        if quote is not None:
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = None
                i += 1
                continue
        elif ch in "\"'`":
            quote = ch
            regex = ch == '"' and _after_regex_operator(template, i)
            i += 1
            continue
        elif ch == "#":
            end = template.find("\n", i)
            i = len(template) if end < 0 else end
            continue
        if ch == "$":
            m = _PLACEHOLDER.match(template, i)
            if m:
                found.append((m.group(1) or m.group(2), i, quote, quote is not None and regex))
                i = m.end()
                continue
        i += 1
    if quote is not None:
        raise InvalidInput(f"query template {template!r}: a {quote} string is not closed")
    return found


def _after_regex_operator(template: str, quote_at: int) -> bool:
    """Whether the string opening at ``quote_at`` is the value of a ``=~``/``!~`` matcher."""
    j = quote_at - 1
    while j >= 0 and template[j].isspace():
        j -= 1
    return j >= 1 and template[j] == "~" and template[j - 1] in "=!"


def check_template(template: str, *, field: str = "query") -> None:
    """Raise InvalidInput unless every placeholder is known and placed where it is safe."""
    for name, pos, quote, _ in _placeholders(template):
        if name not in VARIABLES:
            raise InvalidInput(
                f"{field}: unknown variable ${name} at position {pos}; "
                f"allowed: {', '.join('$' + v for v in VARIABLES)}"
            )
        if name in LABEL_VARIABLES and quote != '"':
            raise InvalidInput(
                f'{field}: ${name} at position {pos} must stand inside a "double-quoted" '
                "label value, where it is escaped"
            )
        if name in DURATION_VARIABLES and quote is not None:
            raise InvalidInput(f"{field}: ${name} at position {pos} must stand outside strings")
