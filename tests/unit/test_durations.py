"""Durations as people write them and as PromQL wants them."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from gatekeeper.domain.durations import (
    Duration,
    format_duration,
    parse_duration,
    promql_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("2m", 120.0, id="minutes"),
        pytest.param("1h30m", 5400.0, id="hours-and-minutes"),
        pytest.param("1d2h3m4s5ms", 93784.005, id="every-unit"),
        pytest.param("500ms", 0.5, id="milliseconds-not-minutes"),
        pytest.param("1.5m", 90.0, id="decimal-minutes"),
        pytest.param("90", 90.0, id="bare-number-text-is-seconds"),
        pytest.param("2.5", 2.5, id="bare-decimal-text"),
        pytest.param("  2m ", 120.0, id="surrounding-space"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param(45, 45.0, id="int-seconds"),
        pytest.param(0.25, 0.25, id="float-seconds"),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "duration '' is not a duration", id="empty"),
        pytest.param("   ", "is not a duration", id="blank"),
        pytest.param("soon", "duration 'soon' is not a duration", id="word"),
        pytest.param("5 minutes", "is not a duration", id="spelled-out-unit"),
        pytest.param("2 m", "is not a duration", id="space-inside"),
        pytest.param("2M", "is not a duration", id="upper-case-unit"),
        pytest.param("1w", "is not a duration", id="weeks-not-supported"),
        pytest.param("-1m", "is not a duration", id="negative-text"),
        pytest.param("2m junk", "is not a duration", id="trailing-junk"),
        pytest.param("m", "is not a duration", id="unit-without-number"),
        pytest.param(-1, "duration -1 is negative", id="negative-number"),
        pytest.param(True, "duration True is not a duration", id="boolean"),
        pytest.param(float("nan"), "duration nan is not a finite number", id="nan"),
        pytest.param(float("inf"), "duration inf is not a finite number", id="infinity"),
    ],
)
def test_parse_duration_rejects(text: str | float, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_duration(text)


def test_parse_duration_error_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r'use a number with ms, s, m, h or d, such as "30s"'):
        parse_duration("later")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(120, "2m", id="minutes"),
        pytest.param(90, "1m30s", id="minutes-and-seconds"),
        pytest.param(0.5, "500ms", id="sub-second"),
        pytest.param(90.5, "90500ms", id="not-whole-seconds-in-ms"),
        pytest.param(3600, "1h", id="hour"),
        pytest.param(5400, "1h30m", id="hour-and-a-half"),
        pytest.param(86400 + 1, "1d1s", id="day-and-second"),
        pytest.param(0, "0s", id="zero"),
        pytest.param(-5, "0s", id="negative-is-zero"),
        pytest.param(0.0004, "0s", id="below-a-millisecond-is-never-empty"),
        pytest.param(10 / 60, "167ms", id="scaled-rounded-to-ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert promql_duration(seconds) == text


@pytest.mark.parametrize(
    "text",
    ["30s", "2m", "1h30m", "500ms", "1d", "15m", "1m30s", "1500ms"],
)
def test_format_parse_round_trip(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


class _Model(BaseModel):
    window: Duration


@pytest.mark.parametrize(
    ("given", "seconds", "dumped"),
    [
        pytest.param("2m", 120.0, "2m", id="text"),
        pytest.param(300, 300.0, "5m", id="number"),
        pytest.param("0.5", 0.5, "500ms", id="numeric-text"),
    ],
)
def test_duration_field(given: str | float, seconds: float, dumped: str) -> None:
    m = _Model.model_validate({"window": given})
    assert m.window == seconds
    assert m.model_dump(mode="json") == {"window": dumped}


def test_duration_field_rejects_with_the_text() -> None:
    with pytest.raises(ValidationError, match="duration 'two minutes' is not a duration"):
        _Model.model_validate({"window": "two minutes"})
