"""The Prometheus text exposition format: the sample lines of a /metrics answer."""

from __future__ import annotations

from collections.abc import Iterator


def parse_exposition(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line; raises ValueError on a malformed line.

    Sample names are kept as written (prometheus_client's parser renames counters
    without ``_total``). Comments, HELP/TYPE lines and OpenMetrics exemplars are skipped.
    """
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield _parse_sample(line)
        except ValueError as e:
            raise ValueError(f"line {number}: {e}: {line[:200]!r}") from None


def _parse_sample(line: str) -> tuple[str, dict[str, str], float]:
    pos = 0
    n = len(line)
    while pos < n and line[pos] not in "{ \t":
        pos += 1
    name = line[:pos]
    if not name:
        raise ValueError("no metric name")
    labels: dict[str, str] = {}
    if pos < n and line[pos] == "{":
        pos += 1
        while True:
            while pos < n and line[pos] in " \t,":
                pos += 1
            if pos >= n:
                raise ValueError("unterminated label set")
            if line[pos] == "}":
                pos += 1
                break
            begin = pos
            while pos < n and (line[pos].isalnum() or line[pos] in "_:"):
                pos += 1
            label = line[begin:pos]
            while pos < n and line[pos] in " \t":
                pos += 1
            if not label or pos >= n or line[pos] != "=":
                raise ValueError(f"label {label!r} is not followed by '='")
            pos += 1
            while pos < n and line[pos] in " \t":
                pos += 1
            if pos >= n or line[pos] != '"':
                raise ValueError(f"label {label!r} has no quoted value")
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= n:
                    raise ValueError(f"label {label!r} has an unterminated value")
                c = line[pos]
                if c == "\\" and pos + 1 < n:
                    nxt = line[pos + 1]
                    chars.append("\n" if nxt == "n" else nxt)
                    pos += 2
                elif c == '"':
                    pos += 1
                    break
                else:
                    chars.append(c)
                    pos += 1
            labels[label] = "".join(chars)
    rest = line[pos:].split()
    if not rest:
        raise ValueError("no value")
    return name, labels, float(rest[0])
