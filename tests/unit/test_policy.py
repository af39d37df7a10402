"""Release policy: windows, freezes and clock changes, the queue per app and environment,
expedited hotfixes, the alert block, the reasons people read, and loading the policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from textwrap import dedent
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.policy import (
    Alert,
    AlertState,
    DeployWindow,
    EnvironmentPolicy,
    Freeze,
    PolicyConfig,
    ReleaseRequest,
    WindowState,
    days_text,
    decide_start,
    local_instant,
    parse_policy,
    quote_label_value,
    window_open,
)
from gatekeeper.domain.release import parse_release
from gatekeeper.engine.alertmanager import filter_matcher
from gatekeeper.engine.policy_config import load_policy_file, parse_policy_yaml

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def env(
    windows: list[dict[str, Any]] | None = None,
    freezes: list[dict[str, Any]] | None = None,
    timezone: str = "Europe/Berlin",
    name: str = "production",
) -> EnvironmentPolicy:
    config = parse_policy(
        {
            "environments": {
                name: {"timezone": timezone, "windows": windows or [], "freezes": freezes or []}
            }
        }
    )
    return config.for_environment(name)


OFFICE = [{"days": "Mon-Fri", "start": "09:00", "end": "17:00"}]
YEAR_END = {"start": "2026-12-21", "end": "2027-01-03", "reason": "year-end freeze"}


# -- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "parsed"),
    [
        pytest.param("Mon-Fri", (0, 1, 2, 3, 4), id="range"),
        pytest.param("mon,wed,fri", (0, 2, 4), id="list-in-text"),
        pytest.param(["Sat", "Sun"], (5, 6), id="yaml-list"),
        pytest.param("Fri-Mon", (0, 4, 5, 6), id="range-wraps-the-week"),
        pytest.param("Monday, Tuesday", (0, 1), id="full-names"),
        pytest.param("Mon-Sun", (0, 1, 2, 3, 4, 5, 6), id="every-day"),
        pytest.param([0, 6], (0, 6), id="weekday-numbers"),
    ],
)
def test_days_are_read_as_people_write_them(days: Any, parsed: tuple[int, ...]) -> None:
    assert (
        DeployWindow.model_validate({"days": days, "start": "09:00", "end": "17:00"}).days == parsed
    )


@pytest.mark.parametrize(
    ("days", "text"),
    [
        ((0, 1, 2, 3, 4), "Mon-Fri"),
        ((0, 2, 4), "Mon,Wed,Fri"),
        ((0, 4, 5, 6), "Fri-Mon"),
        ((5, 6), "Sat-Sun"),
        ((0, 1, 2, 3, 4, 5, 6), "Mon-Sun"),
        ((2,), "Wed"),
    ],
)
def test_days_text(days: tuple[int, ...], text: str) -> None:
    assert days_text(days) == text


def test_window_text_and_end_of_day() -> None:
    assert (
        DeployWindow.model_validate({"days": "Sat", "start": "00:00", "end": "24:00"}).text()
        == "Sat 00:00-24:00"
    )
    assert DeployWindow.model_validate(
        {"days": "Mon-Fri", "start": "22:00", "end": "06:00"}
    ).crosses_midnight
    assert not DeployWindow.model_validate(
        {"days": "Mon-Fri", "start": "09:00", "end": "17:00"}
    ).crosses_midnight


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        pytest.param(
            {"environments": {"production": {"timezone": "Europe/Berlinn"}}},
            "policy: environments.production.timezone: 'Europe/Berlinn' is not an IANA time "
            "zone name",
            id="timezone",
        ),
        pytest.param(
            {"environments": {"production": {"windows": [{"days": "Mnday", "start": "09:00"}]}}},
            "environments.production.windows.0.days: 'Mnday' is not a day of the week: use "
            "Mon, Tue, Wed, Thu, Fri, Sat or Sun",
            id="day",
        ),
        pytest.param(
            {"default": {"windows": [{"days": "Mon", "start": 1020, "end": "18:00"}]}},
            "default.windows.0.start: 1020 is a number, not a time of day: write it in "
            'quotes, such as "17:00"',
            id="unquoted-time-read-as-base-60",
        ),
        pytest.param(
            {"default": {"windows": [{"days": "Mon", "start": "09:00", "end": "25:00"}]}},
            "default.windows.0.end: '25:00' is not a time of day: hours 00-23 and minutes "
            "00-59, or 24:00 for the end of the day",
            id="hour-25",
        ),
        pytest.param(
            {"default": {"windows": [{"days": "Mon", "start": "24:00", "end": "06:00"}]}},
            "default.windows.0.start: '24:00' is not a time of day: hours 00-23 and minutes 00-59",
            id="start-at-24",
        ),
        pytest.param(
            {"default": {"windows": [{"days": "Mon", "start": "9am", "end": "17:00"}]}},
            "default.windows.0.start: '9am' is not a time of day: use HH:MM",
            id="not-hh-mm",
        ),
        pytest.param(
            {"default": {"windows": [{"days": "Mon", "start": "09:00"}]}},
            "default.windows.0.end: Field required",
            id="end-missing",
        ),
        pytest.param(
            {"default": {"freezes": [{"start": "2026-12-22", "end": "2026-12-21", "reason": "x"}]}},
            "default.freezes.0: end 2026-12-21 is before start 2026-12-22",
            id="freeze-reversed",
        ),
        pytest.param(
            {
                "default": {
                    "freezes": [{"start": "2026-12-22 10:00", "end": "2026-12-21", "reason": "x"}]
                }
            },
            "default: freezes.0: end 2026-12-21 is not after start 2026-12-22 10:00 in UTC",
            id="freeze-reversed-mixed-kinds",
        ),
        pytest.param(
            {"default": {"freezes": [{"start": "next week", "end": "2026-12-21", "reason": "x"}]}},
            "default.freezes.0.start: 'next week' is not a date or a time",
            id="freeze-not-a-date",
        ),
        pytest.param(
            {"default": {"freezes": [{"start": "2026-12-21", "end": "2026-12-21", "reason": " "}]}},
            "default.freezes.0.reason: a freeze needs a reason",
            id="freeze-without-reason",
        ),
        pytest.param(
            {"environments": {"Production": {}}},
            "environments.Production.[key]: 'Production' is not a lower-case DNS label",
            id="environment-name",
        ),
        pytest.param(
            {"environments": {"production": {"name": "staging"}}},
            "environments: production.name 'staging' differs from its key 'production'",
            id="name-differs-from-key",
        ),
        pytest.param(
            {"environments": {"production": {"window": []}}},
            "environments.production.window: is not a known field",
            id="unknown-field",
        ),
        pytest.param(
            {"alertmanager": {"url": "alertmanager:9093"}},
            "alertmanager.url: 'alertmanager:9093' is not a URL starting with http:// or https://",
            id="url",
        ),
        pytest.param(
            {"alertmanager": {"url": "http://am:9093", "matchers": {"app-name": "{app}"}}},
            "alertmanager.matchers.app-name.[key]: 'app-name' is not a label name",
            id="matcher-label",
        ),
        pytest.param(
            {"alertmanager": {"url": "http://am:9093", "attempts": 0}},
            "alertmanager.attempts: Input should be greater than or equal to 1",
            id="attempts",
        ),
    ],
)
def test_bad_policy_names_the_field_and_the_value(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(policy)
    assert message in str(caught.value)


def test_a_policy_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidInput, match="policy: the policy is a mapping, got list"):
        parse_policy([])


def test_policy_round_trips_through_its_json_form() -> None:
    config = parse_policy(
        {
            "alertmanager": {"url": "http://am:9093", "timeout": "2s"},
            "environments": {
                "production": {
                    "timezone": "Europe/Berlin",
                    "windows": [{"days": "Mon-Fri", "start": "09:00", "end": "24:00"}],
                    "freezes": [
                        YEAR_END,
                        {
                            "start": "2026-11-27 06:00",
                            "end": "2026-11-28T00:00:00+01:00",
                            "reason": "Black Friday",
                        },
                    ],
                }
            },
        }
    )
    dumped = config.model_dump(mode="json")
    assert dumped["environments"]["production"]["windows"] == [
        {"days": "Mon-Fri", "start": "09:00", "end": "00:00"}
    ]
    assert dumped["alertmanager"]["timeout"] == "2s"
    assert parse_policy(dumped) == config


README_EXAMPLE = dedent(
    """\
    policy:
      alertmanager:
        url: http://alertmanager.monitoring:9093
        matchers: {severity: critical, app: "{app}"}
      default:
        timezone: UTC
      environments:
        production:
          timezone: Europe/Berlin
          windows:
            - {days: Mon-Thu, start: "09:00", end: "17:00"}
            - {days: Fri, start: "09:00", end: "12:00"}
          freezes:
            - {start: 2026-12-21, end: 2027-01-03, reason: year-end freeze}
            - {start: "2026-11-27 06:00", end: "2026-11-28 00:00", reason: Black Friday}
        staging:
          alertmanager_block: false
    """
)


def test_policy_section_of_a_yaml_config(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(README_EXAMPLE)
    config = load_policy_file(path, section="policy")
    production = config.for_environment("production")
    assert production.timezone == "Europe/Berlin"
    assert [w.text() for w in production.windows] == ["Mon-Thu 09:00-17:00", "Fri 09:00-12:00"]
    assert production.freezes[0].start == date(2026, 12, 21)
    assert production.freezes[1].start == datetime(2026, 11, 27, 6, 0)
    assert not config.for_environment("staging").alertmanager_block
    assert config.alertmanager is not None
    assert config.alertmanager.matchers == {"severity": "critical", "app": "{app}"}


def test_the_readme_example_is_a_valid_policy() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Deploy windows, freezes and alerts", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_policy_yaml(example, source="README.md", section="policy")
    assert config.alertmanager is not None and config.alertmanager.attempts == 3
    production = config.for_environment("production")
    assert [w.text() for w in production.windows] == ["Mon-Thu 09:00-17:00", "Fri 09:00-12:00"]
    friday = window_open(production, datetime(2026, 12, 4, 12, 0, tzinfo=BERLIN))
    assert friday.next_open == datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)


def test_yaml_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    unquoted = "policy:\n  default:\n    windows: [{days: Mon, start: 17:00, end: '18:00'}]\n"
    with pytest.raises(InvalidInput) as caught:
        parse_policy_yaml(unquoted, source="gatekeeper.yaml", section="policy")
    assert str(caught.value).startswith(
        "gatekeeper.yaml: policy: default.windows.0.start: 1020 is a number"
    )
    with pytest.raises(InvalidInput, match="gatekeeper.yaml: not valid YAML"):
        parse_policy_yaml("policy: [", source="gatekeeper.yaml")
    with pytest.raises(InvalidInput, match=r"policy file .*missing.yaml: No such file"):
        load_policy_file(tmp_path / "missing.yaml")


def test_no_policy_section_is_the_default_policy() -> None:
    assert parse_policy_yaml("server: {port: 8080}\n", section="policy") == PolicyConfig()
    assert parse_policy_yaml("") == PolicyConfig()


def test_unknown_environment_gets_the_default_policy() -> None:
    config = parse_policy({"default": {"timezone": "America/New_York"}})
    policy = config.for_environment("qa")
    assert (policy.name, policy.timezone, policy.windows) == ("qa", "America/New_York", ())
    state = window_open(policy, utc(2026, 12, 5, 3, 0))
    assert state == WindowState(True, "qa has no deploy window (always open)")


# -- windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "is_open", "moment", "reason"),
    [
        pytest.param(
            datetime(2026, 12, 5, 12, 0, tzinfo=BERLIN),
            False,
            utc(2026, 12, 7, 8, 0),
            "production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; "
            "opens Mon 2026-12-07 09:00 CET",
            id="saturday",
        ),
        pytest.param(
            datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN),
            True,
            utc(2026, 12, 7, 16, 0),
            "production window Mon-Fri 09:00-17:00 Europe/Berlin is open until "
            "Mon 2026-12-07 17:00 CET",
            id="start-is-inside",
        ),
        pytest.param(
            datetime(2026, 12, 7, 17, 0, tzinfo=BERLIN),
            False,
            utc(2026, 12, 8, 8, 0),
            "production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; "
            "opens Tue 2026-12-08 09:00 CET",
            id="end-is-outside",
        ),
        pytest.param(
            datetime(2026, 12, 7, 8, 59, 59, tzinfo=BERLIN),
            False,
            utc(2026, 12, 7, 8, 0),
            "production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; "
            "opens Mon 2026-12-07 09:00 CET",
            id="a-second-early",
        ),
        pytest.param(
            utc(2026, 7, 3, 7, 30),
            True,
            utc(2026, 7, 3, 15, 0),
            "production window Mon-Fri 09:00-17:00 Europe/Berlin is open until "
            "Fri 2026-07-03 17:00 CEST",
            id="summer-time-from-a-utc-clock",
        ),
    ],
)
def test_office_hours(now: datetime, is_open: bool, moment: datetime, reason: str) -> None:
    state = window_open(env(OFFICE), now)
    assert (state.open, state.reason) == (is_open, reason)
    assert (state.closes_at if is_open else state.next_open) == moment


@pytest.mark.parametrize(
    ("now", "is_open", "moment"),
    [
        pytest.param(
            datetime(2026, 12, 8, 3, 0, tzinfo=BERLIN), True, (2026, 12, 8, 6), id="tue-early"
        ),
        pytest.param(
            datetime(2026, 12, 12, 3, 0, tzinfo=BERLIN), True, (2026, 12, 12, 6), id="sat-early"
        ),
        pytest.param(
            datetime(2026, 12, 7, 3, 0, tzinfo=BERLIN), False, (2026, 12, 7, 22), id="mon-early"
        ),
        pytest.param(
            datetime(2026, 12, 13, 3, 0, tzinfo=BERLIN), False, (2026, 12, 14, 22), id="sun-early"
        ),
        pytest.param(
            datetime(2026, 12, 7, 22, 0, tzinfo=BERLIN), True, (2026, 12, 8, 6), id="mon-night"
        ),
    ],
)
def test_window_across_midnight_belongs_to_the_day_it_opens(
    now: datetime, is_open: bool, moment: tuple[int, int, int, int]
) -> None:
    state = window_open(env([{"days": "Mon-Fri", "start": "22:00", "end": "06:00"}]), now)
    assert state.open is is_open
    assert (state.closes_at if is_open else state.next_open) == datetime(*moment, tzinfo=BERLIN)


def test_windows_that_touch_close_at_the_last_end() -> None:
    policy = env(
        [
            {"days": "Mon", "start": "20:00", "end": "24:00"},
            {"days": "Tue", "start": "00:00", "end": "02:00"},
            {"days": "Mon", "start": "09:00", "end": "12:00"},
        ]
    )
    state = window_open(policy, datetime(2026, 12, 7, 21, 0, tzinfo=BERLIN))
    assert state.closes_at == datetime(2026, 12, 8, 2, 0, tzinfo=BERLIN)
    assert state.reason.startswith(
        "production windows Mon 20:00-24:00 and Tue 00:00-02:00 and Mon 09:00-12:00 "
        "Europe/Berlin are open until Tue 2026-12-08 02:00 CET"
    )


def test_every_hour_of_every_day_never_closes() -> None:
    state = window_open(
        env([{"days": "Mon-Sun", "start": "00:00", "end": "24:00"}]), utc(2026, 5, 1)
    )
    assert state.open and state.closes_at is None


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="now 2026-12-07T10:00:00 has no time zone"):
        window_open(env(OFFICE), datetime(2026, 12, 7, 10, 0))


# -- clock changes ----------------------------------------------------------------------
# Europe/Berlin 2026: 02:00 CET -> 03:00 CEST on Sun 03-29 (01:00 UTC), 03:00 CEST ->
# 02:00 CET on Sun 10-25 (01:00 UTC). America/New_York 2026: 02:00 EST -> 03:00 EDT on
# Sun 03-08 (07:00 UTC), 02:00 EDT -> 01:00 EST on Sun 11-01 (06:00 UTC).


@pytest.mark.parametrize(
    ("day", "clock", "zone", "occurrence", "instant"),
    [
        pytest.param(
            date(2026, 3, 29), time(1, 0), BERLIN, "first", utc(2026, 3, 29, 0, 0), id="before-jump"
        ),
        pytest.param(
            date(2026, 3, 29),
            time(2, 30),
            BERLIN,
            "first",
            utc(2026, 3, 29, 1, 0),
            id="skipped-is-the-jump",
        ),
        pytest.param(
            date(2026, 3, 29),
            time(2, 0),
            BERLIN,
            "last",
            utc(2026, 3, 29, 1, 0),
            id="skipped-either-way",
        ),
        pytest.param(
            date(2026, 3, 29), time(3, 0), BERLIN, "first", utc(2026, 3, 29, 1, 0), id="after-jump"
        ),
        pytest.param(
            date(2026, 10, 25),
            time(2, 30),
            BERLIN,
            "first",
            utc(2026, 10, 25, 0, 30),
            id="repeated-first",
        ),
        pytest.param(
            date(2026, 10, 25),
            time(2, 30),
            BERLIN,
            "last",
            utc(2026, 10, 25, 1, 30),
            id="repeated-last",
        ),
        pytest.param(
            date(2026, 3, 8),
            time(2, 30),
            NEW_YORK,
            "first",
            utc(2026, 3, 8, 7, 0),
            id="new-york-skipped",
        ),
        pytest.param(
            date(2026, 11, 1),
            time(1, 30),
            NEW_YORK,
            "first",
            utc(2026, 11, 1, 5, 30),
            id="new-york-first",
        ),
        pytest.param(
            date(2026, 11, 1),
            time(1, 30),
            NEW_YORK,
            "last",
            utc(2026, 11, 1, 6, 30),
            id="new-york-last",
        ),
    ],
)
def test_local_instant_across_clock_changes(
    day: date, clock: time, zone: ZoneInfo, occurrence: Any, instant: datetime
) -> None:
    assert local_instant(day, clock, zone, occurrence) == instant


def test_spring_forward_window_lasts_one_real_hour() -> None:
    policy = env([{"days": "Sun", "start": "01:00", "end": "03:00"}])
    opened = window_open(policy, utc(2026, 3, 29, 0, 0))  # 01:00 CET
    assert opened.open
    assert opened.closes_at == utc(2026, 3, 29, 1, 0)
    assert opened.reason.endswith("is open until Sun 2026-03-29 03:00 CEST")
    assert window_open(policy, utc(2026, 3, 29, 0, 59, 59)).open  # 01:59:59 CET
    assert not window_open(policy, utc(2026, 3, 29, 1, 0)).open  # 03:00 CEST


def test_window_starting_at_a_skipped_time_opens_at_the_jump() -> None:
    policy = env([{"days": "Sun", "start": "02:30", "end": "05:00"}])
    before = window_open(policy, utc(2026, 3, 29, 0, 30))  # 01:30 CET
    assert not before.open
    assert before.next_open == utc(2026, 3, 29, 1, 0)
    assert before.reason == (
        "production window Sun 02:30-05:00 Europe/Berlin is closed; opens Sun 2026-03-29 03:00 CEST"
    )
    assert window_open(policy, utc(2026, 3, 29, 1, 0)).open
    # A week later 02:30 exists again.
    after = window_open(policy, utc(2026, 3, 29, 3, 0))
    assert after.next_open == datetime(2026, 4, 5, 2, 30, tzinfo=BERLIN)


def test_window_wholly_in_the_skipped_hour_waits_a_week() -> None:
    state = window_open(
        env([{"days": "Sun", "start": "02:00", "end": "02:30"}]), utc(2026, 3, 28, 12)
    )
    assert state.next_open == utc(2026, 4, 5, 0, 0)  # 02:00 CEST
    assert state.reason.endswith("opens Sun 2026-04-05 02:00 CEST")


def test_autumn_window_counts_the_repeated_hour() -> None:
    policy = env([{"days": "Sun", "start": "01:00", "end": "03:00"}])
    state = window_open(policy, utc(2026, 10, 25, 1, 30))  # 02:30 CET, the second time
    assert state.open
    assert state.closes_at == utc(2026, 10, 25, 2, 0)  # three real hours after 01:00 CEST
    assert window_open(policy, utc(2026, 10, 24, 23, 0)).open  # 01:00 CEST


def test_window_in_the_repeated_hour_is_its_first_pass() -> None:
    policy = env([{"days": "Sun", "start": "02:00", "end": "02:30"}])
    first = window_open(policy, utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert first.open and first.closes_at == utc(2026, 10, 25, 0, 30)
    second = window_open(policy, utc(2026, 10, 25, 1, 15))  # 02:15 CET
    assert not second.open
    assert second.next_open == datetime(2026, 11, 1, 2, 0, tzinfo=BERLIN)
    ahead = window_open(policy, utc(2026, 10, 24, 22, 0))
    assert ahead.next_open == utc(2026, 10, 25, 0, 0)
    assert ahead.reason.endswith("opens Sun 2026-10-25 02:00 CEST")


def test_office_hours_follow_the_change_of_offset() -> None:
    state = window_open(env(OFFICE), utc(2026, 3, 28, 12))
    assert state.next_open == utc(2026, 3, 30, 7, 0)
    assert state.reason.endswith("opens Mon 2026-03-30 09:00 CEST")


def test_new_york_skipped_and_repeated_hours() -> None:
    spring = env([{"days": "Sun", "start": "02:30", "end": "04:00"}], timezone="America/New_York")
    state = window_open(spring, utc(2026, 3, 8, 6, 0))  # 01:00 EST
    assert state.next_open == utc(2026, 3, 8, 7, 0)
    assert state.reason.endswith("opens Sun 2026-03-08 03:00 EDT")

    autumn = env([{"days": "Sun", "start": "01:30", "end": "03:00"}], timezone="America/New_York")
    assert window_open(autumn, utc(2026, 11, 1, 5, 30)).open  # 01:30 EDT
    second = window_open(autumn, utc(2026, 11, 1, 6, 45))  # 01:45 EST
    assert second.open and second.closes_at == utc(2026, 11, 1, 8, 0)

    overnight = env(
        [{"days": "Sat", "start": "22:00", "end": "06:00"}], timezone="America/New_York"
    )
    night = window_open(overnight, utc(2026, 3, 8, 3, 0))  # 22:00 EST
    assert night.closes_at == utc(2026, 3, 8, 10, 0)  # 06:00 EDT: seven real hours
    assert night.reason.endswith("is open until Sun 2026-03-08 06:00 EDT")


# -- freezes ----------------------------------------------------------------------------


def test_freeze_of_whole_days_includes_both_ends() -> None:
    policy = env(OFFICE, [YEAR_END])
    first = window_open(policy, datetime(2026, 12, 21, 10, 0, tzinfo=BERLIN))
    assert not first.open
    assert first.freeze == policy.freezes[0]
    assert first.next_open == datetime(2027, 1, 4, 9, 0, tzinfo=BERLIN)
    assert first.reason == (
        "production is frozen: year-end freeze (2026-12-21 to 2027-01-03); opens Mon "
        "2027-01-04 09:00 CET (production window Mon-Fri 09:00-17:00 Europe/Berlin)"
    )
    always = env(freezes=[YEAR_END])
    assert not window_open(always, datetime(2026, 12, 21, 0, 0, tzinfo=BERLIN)).open
    last = window_open(always, datetime(2027, 1, 3, 23, 59, tzinfo=BERLIN))
    assert not last.open and last.next_open == datetime(2027, 1, 4, 0, 0, tzinfo=BERLIN)
    assert window_open(always, datetime(2027, 1, 4, 0, 0, tzinfo=BERLIN)).open


def test_closed_window_names_the_freeze_that_delays_the_opening() -> None:
    state = window_open(env(OFFICE, [YEAR_END]), datetime(2026, 12, 18, 18, 0, tzinfo=BERLIN))
    assert state.freeze is None
    assert state.next_open == datetime(2027, 1, 4, 9, 0, tzinfo=BERLIN)
    assert state.reason == (
        "production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; opens Mon 2027-01-04 "
        "09:00 CET, after a freeze: year-end freeze (2026-12-21 to 2027-01-03)"
    )


def test_open_window_says_when_a_freeze_cuts_it_short() -> None:
    freeze = {
        "start": "2026-12-04 15:00",
        "end": "2026-12-04 18:00",
        "reason": "payments migration",
    }
    policy = env(OFFICE, [freeze])
    state = window_open(policy, datetime(2026, 12, 4, 14, 0, tzinfo=BERLIN))
    assert state.open and state.closes_at == datetime(2026, 12, 4, 15, 0, tzinfo=BERLIN)
    assert state.reason == (
        "production window Mon-Fri 09:00-17:00 Europe/Berlin is open until Fri 2026-12-04 15:00 "
        "CET, when a freeze starts: payments migration (2026-12-04 15:00 CET to 2026-12-04 "
        "18:00 CET)"
    )
    frozen = window_open(policy, datetime(2026, 12, 4, 15, 30, tzinfo=BERLIN))
    # The window closes at 17:00, before the freeze ends: the next opening is Monday's.
    assert frozen.next_open == datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)
    no_windows = env(freezes=[freeze])
    frozen = window_open(no_windows, datetime(2026, 12, 4, 15, 30, tzinfo=BERLIN))
    assert frozen.next_open == datetime(2026, 12, 4, 18, 0, tzinfo=BERLIN)
    assert frozen.reason == (
        "production is frozen: payments migration (2026-12-04 15:00 CET to 2026-12-04 18:00 "
        "CET); opens Fri 2026-12-04 18:00 CET"
    )
    before = window_open(no_windows, datetime(2026, 12, 4, 12, 0, tzinfo=BERLIN))
    assert before.reason == (
        "production has no deploy window: open until Fri 2026-12-04 15:00 CET, when a freeze "
        "starts: payments migration (2026-12-04 15:00 CET to 2026-12-04 18:00 CET)"
    )


def test_freeze_ending_inside_a_window_opens_it_at_the_freeze_end() -> None:
    freeze = {"start": "2026-12-07T06:00:00Z", "end": "2026-12-07T10:30:00Z", "reason": "audit"}
    state = window_open(env(OFFICE, [freeze]), datetime(2026, 12, 7, 10, 0, tzinfo=BERLIN))
    assert not state.open
    assert state.next_open == utc(2026, 12, 7, 10, 30)
    assert state.reason.endswith(
        "opens Mon 2026-12-07 11:30 CET (production window Mon-Fri 09:00-17:00 Europe/Berlin)"
    )


def test_freezes_that_touch_are_passed_together() -> None:
    freezes = [
        {"start": "2026-12-07", "end": "2026-12-08", "reason": "first"},
        {"start": "2026-12-09", "end": "2026-12-10", "reason": "second"},
    ]
    state = window_open(env(OFFICE, freezes), datetime(2026, 12, 7, 12, 0, tzinfo=BERLIN))
    assert state.next_open == datetime(2026, 12, 11, 9, 0, tzinfo=BERLIN)


def test_freezes_starting_together_close_the_window_at_their_start() -> None:
    freezes = [
        {"start": "2026-12-07 12:00", "end": "2026-12-07 13:00", "reason": "lunch"},
        {"start": "2026-12-07 12:00", "end": "2026-12-07 14:00", "reason": "migration"},
    ]
    policy = env(OFFICE, freezes)
    state = window_open(policy, datetime(2026, 12, 7, 10, 0, tzinfo=BERLIN))
    assert state.closes_at == datetime(2026, 12, 7, 12, 0, tzinfo=BERLIN)
    later = window_open(policy, datetime(2026, 12, 7, 12, 30, tzinfo=BERLIN))
    assert later.next_open == datetime(2026, 12, 7, 14, 0, tzinfo=BERLIN)


def test_freeze_longer_than_a_year_still_finds_the_opening() -> None:
    long = {"start": "2026-01-01", "end": "2030-01-01", "reason": "rewrite"}
    state = window_open(env(OFFICE, [long]), utc(2026, 6, 1))
    assert state.next_open == datetime(2030, 1, 2, 9, 0, tzinfo=BERLIN)


def test_freeze_times_across_clock_changes_never_shorten_it() -> None:
    spring = Freeze.model_validate(
        {"start": "2026-03-29 02:30", "end": "2026-03-29 05:00", "reason": "x"}
    )
    assert spring.bounds(BERLIN) == (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 3, 0))
    autumn = Freeze.model_validate(
        {"start": "2026-10-25 02:15", "end": "2026-10-25 02:45", "reason": "x"}
    )
    assert autumn.bounds(BERLIN) == (utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 1, 45))
    aware = Freeze.model_validate(
        {"start": "2026-10-25T02:15:00+01:00", "end": date(2026, 10, 25), "reason": "x"}
    )
    assert aware.bounds(BERLIN) == (utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 23, 0))


# -- the queue, the window, the alerts ---------------------------------------------------

T0 = utc(2026, 12, 7, 9, 0)


def request(
    release_id: str,
    minutes: int = 0,
    *,
    app: str = "shop",
    environment: str = "production",
    expedited: bool = False,
    approved: bool = False,
) -> ReleaseRequest:
    return ReleaseRequest(
        release_id=release_id,
        app=app,
        environment=environment,
        submitted_at=T0 + timedelta(minutes=minutes),
        expedited=expedited,
        expedited_approved=approved,
    )


OPEN = window_open(env(OFFICE), datetime(2026, 12, 7, 10, 0, tzinfo=BERLIN))
CLOSED = window_open(env(OFFICE), datetime(2026, 12, 5, 12, 0, tzinfo=BERLIN))
FROZEN = window_open(env(OFFICE, [YEAR_END]), datetime(2026, 12, 22, 10, 0, tzinfo=BERLIN))
AM = "http://127.0.0.1:9093"
CRITICAL = Alert(
    labels={"alertname": "ShopErrors", "app": "shop", "severity": "critical", "team": 'pay "eu"'},
    starts_at=utc(2026, 12, 7, 8, 55),
)
FIRING = AlertState(source=AM, app="shop", alerts=(CRITICAL,))
QUIET = AlertState(source=AM, app="shop")
UNKNOWN = AlertState(source=AM, app="shop", error="ConnectError: connection refused (3 attempts)")

A = request("shop-production-v2", 0)
B = request("shop-production-v3", 5)
C = request("shop-staging-v3", 6, environment="staging")
D = request("cart-production-v7", 7, app="cart")
E = request("shop-production-v4", 8)


@pytest.mark.parametrize(
    ("release", "active", "action", "cause"),
    [
        pytest.param(A, [], "start", None, id="head-of-queue-starts"),
        pytest.param(B, [], "queue", "queue", id="second-waits"),
        pytest.param(E, [], "queue", "queue", id="third-waits"),
        pytest.param(C, [], "start", None, id="other-environment-independent"),
        pytest.param(D, [], "start", None, id="other-app-independent"),
        pytest.param(A, [request("shop-production-v1", -60)], "queue", "active", id="one-active"),
        pytest.param(D, [request("shop-production-v1", -60)], "start", None, id="other-app-active"),
        pytest.param(A, [A], "start", None, id="itself-active-is-not-another"),
    ],
)
def test_one_release_per_app_and_environment_in_submission_order(
    release: ReleaseRequest, active: list[ReleaseRequest], action: str, cause: str | None
) -> None:
    decision = decide_start(release, active=active, queue=[E, C, B, A, D], window=OPEN)
    assert (decision.action, decision.cause) == (action, cause)


def test_queue_reasons_name_the_releases_ahead() -> None:
    behind = decide_start(E, active=[], queue=[A, B, E], window=OPEN)
    assert behind.reason == (
        "shop-production-v4 queued: position 3 for shop in production, behind "
        "shop-production-v2, shop-production-v3"
    )
    busy = decide_start(B, active=[A], queue=[B, E], window=OPEN)
    assert busy.reason == (
        "shop-production-v3 queued: shop-production-v2 is active for shop in production "
        "(one release per app and environment)"
    )
    # Once v2 is done, v3 is next and v4 still waits behind it.
    assert decide_start(B, active=[], queue=[B, E], window=OPEN).starts
    assert decide_start(E, active=[B], queue=[E], window=OPEN).cause == "active"


def test_approved_hotfix_goes_ahead_of_releases_waiting_for_the_window() -> None:
    hotfix = request("shop-production-v2-hotfix1", 30, expedited=True, approved=True)
    unapproved = request("shop-production-v2-hotfix2", 20, expedited=True)
    queue = [A, B, unapproved, hotfix]
    assert decide_start(hotfix, active=[], queue=queue, window=CLOSED).starts
    assert decide_start(A, active=[], queue=queue, window=CLOSED).reason == (
        "shop-production-v2 queued: position 2 for shop in production, behind "
        "shop-production-v2-hotfix1"
    )
    # Not approved yet: it keeps its place in submission order.
    assert decide_start(unapproved, active=[], queue=queue, window=CLOSED).cause == "queue"
    # Never past an active release.
    assert decide_start(hotfix, active=[A], queue=queue, window=CLOSED).cause == "active"
    earlier = request("shop-production-v2-hotfix0", 25, expedited=True, approved=True)
    assert decide_start(hotfix, active=[], queue=[*queue, earlier], window=CLOSED).cause == "queue"


def test_outside_the_window_a_release_is_queued_until_it_opens() -> None:
    decision = decide_start(A, active=[], queue=[A], window=CLOSED)
    assert (decision.action, decision.cause) == ("queue", "window")
    assert decision.not_before == utc(2026, 12, 7, 8, 0)
    assert decision.reason == (
        "shop-production-v2 queued: production window Mon-Fri 09:00-17:00 Europe/Berlin is "
        "closed; opens Mon 2026-12-07 09:00 CET"
    )
    frozen = decide_start(A, active=[], queue=[A], window=FROZEN)
    assert (frozen.cause, frozen.not_before) == ("freeze", utc(2027, 1, 4, 8, 0))
    assert frozen.reason.startswith("shop-production-v2 queued: production is frozen: year-end")


def test_inside_the_window_the_reason_says_until_when() -> None:
    decision = decide_start(A, active=[], queue=[A], window=OPEN, alerts=QUIET)
    assert decision.starts
    assert decision.reason == (
        "shop-production-v2 starts: production window Mon-Fri 09:00-17:00 Europe/Berlin is "
        "open until Mon 2026-12-07 17:00 CET; no alert is firing for shop"
    )


@pytest.mark.parametrize(
    ("window", "approved", "action", "cause"),
    [
        pytest.param(CLOSED, True, "start", None, id="approved-outside-window-starts"),
        pytest.param(FROZEN, True, "start", None, id="approved-in-a-freeze-starts"),
        pytest.param(CLOSED, False, "queue", "approval", id="unapproved-outside-window-waits"),
        pytest.param(OPEN, False, "queue", "approval", id="unapproved-inside-window-waits"),
        pytest.param(OPEN, True, "start", None, id="approved-inside-window-starts"),
    ],
)
def test_expedited_hotfix_with_and_without_approval(
    window: WindowState, approved: bool, action: str, cause: str | None
) -> None:
    hotfix = request("shop-production-v2-hotfix1", expedited=True, approved=approved)
    decision = decide_start(hotfix, active=[], queue=[hotfix], window=window)
    assert (decision.action, decision.cause) == (action, cause)


def test_expedited_hotfix_reasons() -> None:
    waiting = request("shop-production-v2-hotfix1", expedited=True)
    assert decide_start(waiting, active=[], queue=[], window=CLOSED).reason == (
        "expedited hotfix shop-production-v2-hotfix1 waits for approval by an engineering lead "
        "or the CTO (production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; opens Mon "
        "2026-12-07 09:00 CET)"
    )
    approved = request("shop-production-v2-hotfix1", expedited=True, approved=True)
    assert decide_start(approved, active=[], queue=[], window=CLOSED).reason == (
        "approved expedited hotfix shop-production-v2-hotfix1 starts outside its window: "
        "production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; opens Mon 2026-12-07 "
        "09:00 CET"
    )


def test_firing_alert_holds_the_release_and_names_it() -> None:
    decision = decide_start(A, active=[], queue=[A], window=OPEN, alerts=FIRING)
    assert (decision.action, decision.cause) == ("queue", "alert")
    assert decision.reason == (
        'shop-production-v2 held: alert ShopErrors{app="shop", severity="critical", '
        'team="pay \\"eu\\""} is firing for shop since 2026-12-07 08:55 UTC (Alertmanager at '
        "http://127.0.0.1:9093); it starts once resolved"
    )


def test_alert_block_needs_the_alerts_and_yields_to_an_approved_hotfix() -> None:
    assert decide_start(A, active=[], queue=[A], window=OPEN, alerts=None).starts
    assert decide_start(A, active=[], queue=[A], window=OPEN, alerts=QUIET).starts
    hotfix = request("shop-production-v2-hotfix1", expedited=True, approved=True)
    decision = decide_start(hotfix, active=[], queue=[], window=CLOSED, alerts=FIRING)
    assert decision.starts
    assert decision.reason.endswith(
        'despite alert ShopErrors{app="shop", severity="critical", '
        'team="pay \\"eu\\""} is firing for shop since 2026-12-07 '
        "08:55 UTC"
    )
    # The window is named first when both hold a release.
    assert decide_start(A, active=[], queue=[A], window=CLOSED, alerts=FIRING).cause == "window"


def test_unknown_alerts_hold_the_release_with_the_url_and_the_error() -> None:
    decision = decide_start(A, active=[], queue=[A], window=OPEN, alerts=UNKNOWN)
    assert (decision.action, decision.cause) == ("queue", "alerts-unknown")
    assert decision.reason == (
        "shop-production-v2 held: the alerts of shop could not be read from Alertmanager at "
        "http://127.0.0.1:9093: ConnectError: connection refused (3 attempts); it does not "
        "start while they are unknown"
    )
    hotfix = request("shop-production-v2-hotfix1", expedited=True, approved=True)
    goes = decide_start(hotfix, active=[], queue=[], window=OPEN, alerts=UNKNOWN)
    assert goes.starts and "although the alerts of shop could not be read" in goes.reason


def test_many_alerts_are_counted_and_the_first_named() -> None:
    alerts = tuple(
        Alert(labels={"alertname": f"A{i}", "app": "shop", "severity": "critical"})
        for i in range(7)
    )
    text = AlertState(source=AM, app="shop", alerts=alerts).text()
    assert text.startswith('7 alerts are firing for shop: A0{app="shop", severity="critical"}; ')
    assert "A4{" in text and "A5{" not in text and text.endswith("; and 2 more")


def test_release_request_from_a_spec_and_its_checks() -> None:
    spec = parse_release(
        {
            "app": "shop",
            "version": "v2-hotfix1",
            "command": "run {port}",
            "stable": {"version": "v1", "command": "run {port}"},
            "strategy": {"type": "canary"},
            "expedited": True,
            "expedited_reason": "INC-4711",
        }
    )
    req = ReleaseRequest.of_spec(spec, T0, expedited_approved=True)
    assert (req.release_id, req.key, req.approved_hotfix) == (
        "shop-production-v2-hotfix1",
        ("shop", "production"),
        True,
    )
    with pytest.raises(ValidationError, match="expedited_approved is set but expedited is false"):
        request("shop-production-v2", approved=True)
    with pytest.raises(ValidationError, match="timezone"):
        ReleaseRequest(release_id="x", app="x", environment="y", submitted_at=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("shop", '"shop"'),
        ('pay "eu"', '"pay \\"eu\\""'),
        ("a\\b", '"a\\\\b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("x=~{y}, z", '"x=~{y}, z"'),
    ],
)
def test_label_values_are_quoted_for_matchers(value: str, quoted: str) -> None:
    assert quote_label_value(value) == quoted
    assert filter_matcher("app", value) == f"app={quoted}"
