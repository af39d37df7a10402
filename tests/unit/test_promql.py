"""PromQL text: escaping label values and filling query templates without changing them."""

from __future__ import annotations

import re

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.templates import check_template
from gates.promql import (
    escape_regex,
    escape_string,
    matcher,
    regex_matcher,
    render,
)

# -- a small scanner for PromQL's double-quoted strings (Go escape rules) ---------------------

_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


class Unparsable(Exception):
    pass


def _string_at(text: str, i: int) -> tuple[str, int]:
    """The value of the double-quoted string opening at ``text[i]`` and the index after it."""
    assert text[i] == '"'
    out: list[str] = []
    i += 1
    while True:
        if i >= len(text) or text[i] == "\n":
            raise Unparsable(f"unterminated string in {text!r}")
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1] if i + 1 < len(text) else ""
        if esc in _SIMPLE:
            out.append(_SIMPLE[esc])
            i += 2
        elif esc in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[esc]
            out.append(chr(int(text[i + 2 : i + 2 + n], 16)))
            i += 2 + n
        elif esc.isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise Unparsable(f"unknown escape \\{esc} in {text!r}")


def scan(text: str) -> tuple[str, list[str]]:
    """(the query with every double-quoted string replaced by "", the strings' values)."""
    shape: list[str] = []
    values: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            value, i = _string_at(text, i)
            values.append(value)
            shape.append('""')
        else:
            shape.append(text[i])
            i += 1
    return "".join(shape), values


def unquote(content: str) -> str:
    return _string_at(f'"{content}"', 0)[0]


HOSTILE = [
    pytest.param('we"ird\\app\n', id="quote-backslash-newline"),
    pytest.param('"} or vector(1) #', id="closes-matcher-and-comments-out"),
    pytest.param('", app!="', id="adds-a-matcher"),
    pytest.param("\\", id="lone-backslash"),
    pytest.param('\\"', id="backslash-then-quote"),
    pytest.param("x\\", id="trailing-backslash"),
    pytest.param('"', id="lone-quote"),
    pytest.param("\n", id="lone-newline"),
    pytest.param("\r\t\v\x00", id="control-characters"),
    pytest.param("ünïcødé ✓ 日本 🚀", id="unicode"),
    pytest.param("a'b`c", id="other-quotes"),
    pytest.param("$app ${window} $nope", id="placeholders-in-the-value"),
    pytest.param("\\n", id="backslash-n-literally"),
    pytest.param("", id="empty"),
]


# -- escape_string --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        pytest.param('"', '\\"', id="double-quote"),
        pytest.param("\\", "\\\\", id="backslash"),
        pytest.param("\n", "\\n", id="newline"),
        pytest.param("\r\t", "\\r\\t", id="carriage-return-and-tab"),
        pytest.param('we"ird\\app\n', 'we\\"ird\\\\app\\n', id="all-three-together"),
        pytest.param("ünïcødé 日本", "ünïcødé 日本", id="unicode-unchanged"),
        pytest.param("checkout-v2.1_a", "checkout-v2.1_a", id="plain-unchanged"),
        pytest.param("a'b", "a'b", id="single-quote-unchanged"),
    ],
)
def test_escape_string(value: str, escaped: str) -> None:
    assert escape_string(value) == escaped
    assert unquote(escape_string(value)) == value


@pytest.mark.parametrize("value", HOSTILE)
def test_escape_string_round_trips(value: str) -> None:
    assert "\n" not in escape_string(value)
    assert unquote(escape_string(value)) == value


def test_matcher_quotes_and_escapes() -> None:
    assert matcher("app", 'a"b') == 'app="a\\"b"'


# -- render ---------------------------------------------------------------------------------

TEMPLATE = (
    'sum(rate(http_requests_total{app="$app",version="${version}",code=~"5.."}[$window]))\n'
    '/ sum(rate(http_requests_total{app="$app",version="${version}"}[$window]))'
)


@pytest.mark.parametrize("value", HOSTILE)
def test_render_with_hostile_value_changes_nothing_but_the_value(value: str) -> None:
    benign_shape, _ = scan(render(TEMPLATE, {"app": "plain", "version": "v2", "window": 120}))
    shape, strings = scan(render(TEMPLATE, {"app": value, "version": "v2", "window": 120}))
    assert shape == benign_shape
    assert strings == [value, "v2", "5..", value, "v2"]


def test_render_fills_window_as_a_duration_outside_strings() -> None:
    out = render('x{app="$app"}[$window] offset 1m', {"app": "a", "window": 90})
    assert out == 'x{app="a"}[1m30s] offset 1m'


@pytest.mark.parametrize(
    ("window", "text"),
    [
        pytest.param(120, "2m", id="minutes"),
        pytest.param(90.0, "1m30s", id="mixed-units"),
        pytest.param(0.5, "500ms", id="sub-second"),
        pytest.param("300", "5m", id="numeric-text"),
    ],
)
def test_render_window(window: float | str, text: str) -> None:
    assert render("rate(x[$window])", {"window": window}) == f"rate(x[{text}])"


def test_render_needs_every_variable() -> None:
    with pytest.raises(InvalidInput, match=r"needs \$version"):
        render('x{app="$app",version="$version"}', {"app": "a"})


def test_render_leaves_placeholders_in_comments_alone() -> None:
    template = 'x{app="$app"} # was: x{app=$app}'
    assert render(template, {"app": 'a"'}) == 'x{app="a\\""} # was: x{app=$app}'


# -- check_template -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            'x{app="$application"}',
            r"unknown variable \$application at position 7",
            id="unknown-variable",
        ),
        pytest.param('x{app="${nope}"}', r"unknown variable \$nope", id="unknown-braced-variable"),
        pytest.param(
            "x{app=$app}",
            r"\$app at position 6 must stand inside a \"double-quoted\"",
            id="label-variable-outside-quotes",
        ),
        pytest.param("x{app=${app}}", r"\$app .* must stand inside", id="braced-outside-quotes"),
        pytest.param(
            'label_replace(x, "a", $namespace, "b", "c")',
            r"\$namespace .* must stand inside",
            id="label-variable-as-argument",
        ),
        pytest.param(
            "x{app='$app'}", r"\$app .* must stand inside", id="label-variable-in-single-quotes"
        ),
        pytest.param(
            "x{app=`$app`}", r"\$app .* must stand inside", id="label-variable-in-backticks"
        ),
        pytest.param(
            'x["$window"]',
            r"\$window at position 3 must stand outside strings",
            id="window-in-double-quotes",
        ),
        pytest.param(
            "x{a='$window'}",
            r"\$window .* must stand outside strings",
            id="window-in-single-quotes",
        ),
        pytest.param(
            "x{a=`$window`}", r"\$window .* must stand outside strings", id="window-in-backticks"
        ),
        pytest.param('x{app="$app}', r'a " string is not closed', id="unclosed-double-quote"),
        pytest.param("x{app='a}", r"a ' string is not closed", id="unclosed-single-quote"),
        pytest.param(
            'x{app="a\\"}', r'a " string is not closed', id="escaped-quote-does-not-close"
        ),
        pytest.param(
            'x # "\n{app=$app} # "',
            r"\$app .* must stand inside",
            id="quote-in-comment-opens-no-string",
        ),
    ],
)
def test_check_template_refuses(template: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_template(template, field="gate 'g': query")


def test_check_template_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"^gate 'g': query: unknown variable"):
        check_template("$x", field="gate 'g': query")


@pytest.mark.parametrize(
    "template",
    [
        pytest.param('x{app="$app"}[$window]', id="label-in-quotes-window-outside"),
        pytest.param('x{app="${app}",ns="${namespace}"}[${window}]', id="braced"),
        pytest.param('x{w="$workload",b="$baseline_version"}', id="all-label-variables"),
        pytest.param('x{app=~"$app|other-$version"}', id="two-in-one-regex-string"),
        pytest.param('x{app=~"foo$"}', id="regex-anchor-dollar-is-not-a-placeholder"),
        pytest.param("x{app=`$`}", id="lone-dollar-in-backticks"),
        pytest.param("x{app=`a\\`}", id="backslash-in-backticks-is-literal"),
        pytest.param('x{app="$app"} # it\'s a "comment"', id="quotes-in-trailing-comment"),
        pytest.param('x{app="$app"} # $app here\n+ y{app="$app"}', id="placeholder-in-comment"),
        pytest.param('x{a="#"} + y{app="$app"}', id="hash-inside-string-is-not-a-comment"),
        pytest.param("vector(1)", id="no-placeholders"),
    ],
)
def test_check_template_accepts(template: str) -> None:
    check_template(template)


# -- escape_regex ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        pytest.param("a.b", "a\\\\.b", id="dot"),
        pytest.param("a|b", "a\\\\|b", id="alternation"),
        pytest.param("(x)[y]{2}", "\\\\(x\\\\)\\\\[y\\\\]\\\\{2\\\\}", id="groups-classes-counts"),
        pytest.param("^a$", "\\\\^a\\\\$", id="anchors"),
        pytest.param("a*+?", "a\\\\*\\\\+\\\\?", id="quantifiers"),
        pytest.param('a"b', 'a\\"b', id="quote-string-escaped-only"),
        pytest.param("a\\b", "a\\\\\\\\b", id="backslash-escaped-twice"),
        pytest.param("plain-v1_2", "plain-v1_2", id="plain-unchanged"),
    ],
)
def test_escape_regex(value: str, escaped: str) -> None:
    assert escape_regex(value) == escaped


@pytest.mark.parametrize(
    "value",
    [*HOSTILE, pytest.param("a.b|c*(d)[e]{1}^$+?", id="every-metacharacter")],
)
def test_escape_regex_matches_exactly_the_value(value: str) -> None:
    pattern = unquote(escape_regex(value))
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    assert not re.fullmatch(pattern, value + "x", flags=re.DOTALL)
    if value:
        assert not re.fullmatch(pattern, "x" + value[1:] if value[0] != "x" else "y" + value[1:])


def test_regex_matcher_is_sorted_and_deduplicated() -> None:
    assert regex_matcher("version", ["v2", "v1.0", "v2"]) == 'version=~"v1\\\\.0|v2"'


# -- render: values inside regex matchers -----------------------------------------------------

REGEX_TEMPLATE = 'sum(rate(http_requests_total{app="$app", version=~"$version"}[$window]))'


def _regex_of(rendered: str, index: int) -> str:
    """The RE2 pattern a regex matcher string means, anchored as Prometheus anchors it."""
    return f"^(?:{scan(rendered)[1][index]})$"


@pytest.mark.parametrize(
    ("value", "others"),
    [
        pytest.param(
            "1.2.3+build.7", ["1x2x3+build.7", "1.2.33build.7", "1.2.3build.7"], id="dots-and-plus"
        ),
        pytest.param("1.0", ["100", "1x0", "1.00"], id="dot"),
        pytest.param("v*", ["v", "vvv", "v*x"], id="star"),
        pytest.param("(v1)", ["v1", "(v1"], id="parentheses"),
        pytest.param("v1|v2", ["v1", "v2"], id="alternation"),
        pytest.param("a\\d", ["a1", "ad", "a\\\\d"], id="backslash"),
        pytest.param("[v]^$?{1}", ["v", "[v]"], id="classes-anchors-counts"),
        pytest.param('we"ird\n', ["we", 'we"ird'], id="quote-and-newline"),
    ],
)
def test_render_quotes_regex_metacharacters_inside_a_regex_matcher(
    value: str, others: list[str]
) -> None:
    rendered = render(REGEX_TEMPLATE, {"app": "shop", "version": value, "window": 60})
    pattern = _regex_of(rendered, 1)
    assert re.fullmatch(pattern, value, flags=re.DOTALL), pattern
    for other in others:
        assert not re.fullmatch(pattern, other, flags=re.DOTALL), (pattern, other)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param('x{version!~"$version"}', id="negative-regex"),
        pytest.param('x{version =~ "$version"}', id="spaces-around-the-operator"),
        pytest.param('x{version=~\n\t"$version"}', id="newline-and-tab-before-the-string"),
        pytest.param('x{version=~"${version}"}', id="braced-placeholder"),
    ],
)
def test_render_detects_every_regex_matcher_form(template: str) -> None:
    rendered = render(template, {"version": "1.0"})
    assert scan(rendered)[1] == ["1\\.0"]


@pytest.mark.parametrize(
    "template",
    [
        pytest.param('x{version="$version"}', id="equal"),
        pytest.param('x{version!="$version"}', id="not-equal"),
        pytest.param('x{version = "$version"}', id="equal-with-spaces"),
        pytest.param('x{a=~"v", version="$version"}', id="after-another-regex-matcher"),
    ],
)
def test_render_keeps_plain_string_escaping_outside_regex_matchers(template: str) -> None:
    rendered = render(template, {"version": "1.0+b\\"})
    assert scan(rendered)[1][-1] == "1.0+b\\"


def test_render_escapes_each_value_in_a_shared_regex_string() -> None:
    rendered = render('x{app=~"$app|other-$version"}', {"app": "a.b", "version": "1+"})
    pattern = _regex_of(rendered, 0)
    assert re.fullmatch(pattern, "a.b")
    assert re.fullmatch(pattern, "other-1+")
    assert not re.fullmatch(pattern, "axb")
    assert not re.fullmatch(pattern, "other-11")


@pytest.mark.parametrize("value", HOSTILE)
def test_render_hostile_value_in_a_regex_matcher_changes_nothing_but_the_value(
    value: str,
) -> None:
    benign_shape, _ = scan(render(REGEX_TEMPLATE, {"app": "a", "version": "v2", "window": 60}))
    rendered = render(REGEX_TEMPLATE, {"app": "a", "version": value, "window": 60})
    shape, _ = scan(rendered)
    assert shape == benign_shape
    assert re.fullmatch(_regex_of(rendered, 1), value, flags=re.DOTALL)
