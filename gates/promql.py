"""PromQL text: escaping label values and filling gate query templates safely.

Templates use ``$name`` or ``${name}`` placeholders. Label values (app, namespace,
version, baseline_version, workload) may only stand inside a double-quoted
string, where they are escaped, so a value holding ``"``, ``\\`` or a newline can
neither break nor change the query; inside a ``=~``/``!~`` matcher string their RE2
metacharacters are quoted too, so ``1.0`` matches ``1.0`` alone. ``$window`` must
stand outside strings, and is always a validated duration.
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


def render(template: str, variables: Mapping[str, str | float]) -> str:
    """Fill ``template``; label values are escaped, ``window`` (seconds) becomes a duration.

    A label value inside a ``=~``/``!~`` matcher string has its RE2 metacharacters
    quoted before it is string-escaped, so it matches exactly itself there too
    (``1.0`` would otherwise match ``100``); elsewhere it is only string-escaped.
    """
    check_template(template)
    out: list[str] = []
    last = 0
    for name, pos, _, regex in _placeholders(template):
        m = _PLACEHOLDER.match(template, pos)
        assert m is not None
        if name not in variables:
            raise InvalidInput(f"query template needs ${name}, which this release does not set")
        value = variables[name]
        out.append(template[last:pos])
        if name in DURATION_VARIABLES:
            out.append(promql_duration(float(value)))
        elif regex:
            # Prometheus anchors the regex, so a quoted literal matches the value alone.
            out.append(escape_regex(str(value)))
        else:
            out.append(escape_string(str(value)))
        last = m.end()
    out.append(template[last:])
    return "".join(out)
