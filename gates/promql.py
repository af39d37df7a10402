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
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import promql_duration
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.templates import (
    _PLACEHOLDER,
    DURATION_VARIABLES,
    _placeholders,
    check_template,
)

if TYPE_CHECKING:
    from .profiles import Profile
    from .provider import Subject


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


def selector(profile: Profile, subjects: Sequence[Subject]) -> str:
    """Label matchers for the subjects: exact for one, regex alternations for many."""
    values = [profile.selector_values(s.app, s.namespace, s.version) for s in subjects]
    parts = []
    for label in profile.identity_labels:
        distinct = {v[label] for v in values}
        if len(distinct) == 1:
            parts.append(matcher(label, next(iter(distinct))))
        else:
            parts.append(regex_matcher(label, distinct))
    return ",".join(parts)
