"""PromQL text: escaping label values and filling gate query templates safely.

Templates use ``$name`` or ``${name}`` placeholders. Label values (app, namespace,
version, baseline_version, workload) may only stand inside a double-quoted
string, where they are escaped, so a value holding ``"``, ``\\`` or a newline can
neither break nor change the query. ``$window`` must stand outside strings, and is
always a validated duration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gatekeeper.domain.durations import promql_duration
from gatekeeper.domain.errors import InvalidInput

LABEL_VARIABLES = ("app", "namespace", "version", "baseline_version", "workload")
DURATION_VARIABLES = ("window",)
VARIABLES = LABEL_VARIABLES + DURATION_VARIABLES

_PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def escape_string(value: str) -> str:
    """The content of a double-quoted PromQL string that means exactly ``value``."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """``value`` as a literal inside a PromQL regex matcher string (RE2, then string-escaped)."""
    return escape_string(re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", value))


def matcher(label: str, value: str) -> str:
    return f'{label}="{escape_string(value)}"'


def regex_matcher(label: str, values: Iterable[str]) -> str:
    alts = "|".join(sorted({escape_regex(v) for v in values}))
    return f'{label}=~"{alts}"'


def _placeholders(template: str) -> list[tuple[str, int, str | None]]:
    """(name, position, enclosing quote or None) for each placeholder.

    Walks PromQL's string and comment syntax: a ``#`` outside strings starts a comment
    that runs to the end of the line, and quotes inside it open no string.
    """
    found: list[tuple[str, int, str | None]] = []
    quote: str | None = None
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
            i += 1
            continue
        elif ch == "#":
            end = template.find("\n", i)
            i = len(template) if end < 0 else end
            continue
        if ch == "$":
            m = _PLACEHOLDER.match(template, i)
            if m:
                found.append((m.group(1) or m.group(2), i, quote))
                i = m.end()
                continue
        i += 1
    if quote is not None:
        raise InvalidInput(f"query template {template!r}: a {quote} string is not closed")
    return found


def check_template(template: str, *, field: str = "query") -> None:
    """Raise InvalidInput unless every placeholder is known and placed where it is safe."""
    for name, pos, quote in _placeholders(template):
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


def render(template: str, variables: Mapping[str, str | float]) -> str:
    """Fill ``template``; label values are escaped, ``window`` (seconds) becomes a duration."""
    check_template(template)
    out: list[str] = []
    last = 0
    for name, pos, _ in _placeholders(template):
        m = _PLACEHOLDER.match(template, pos)
        assert m is not None
        if name not in variables:
            raise InvalidInput(f"query template needs ${name}, which this release does not set")
        value = variables[name]
        out.append(template[last:pos])
        if name in DURATION_VARIABLES:
            out.append(promql_duration(float(value)))
        else:
            out.append(escape_string(str(value)))
        last = m.end()
    out.append(template[last:])
    return "".join(out)
