"""Release policy: deploy windows, freezes, one release per app and environment, alert blocks.

Pure: the controller passes the time, the releases and the alerts in; nothing here reads
a clock, a store or the network.

Local times follow the environment's IANA time zone, with two rules for clock changes:

- a local time the clocks skip (02:30 on a spring-forward night) is the moment of the
  jump, the first local time after it (03:00 in Europe/Berlin);
- a local time that happens twice (the repeated hour of an autumn change) is its first
  occurrence for windows, so a window never lasts longer than written; a freeze starts
  at the first occurrence and ends at the last, so a freeze never gets shorter.

An environment the config does not name gets the config's ``default`` policy: unless
the config changes it, no windows (always open), no freezes, UTC, alert block on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from .durations import Duration
from .errors import InvalidInput
from .release import NAME, PATTERN_WORDS, ReleaseSpec
from .validation import error_text

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HORIZON = timedelta(days=366)  # how far ahead the next opening is looked for
URL = r"^https?://\S+$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
WORDS = {
    **PATTERN_WORDS,
    URL: "a URL starting with http:// or https://",
    LABEL_NAME: "a label name: letters, digits and '_', not starting with a digit",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- local time -------------------------------------------------------------------------


def local_instant(
    day: date, clock: time, zone: ZoneInfo, occurrence: Literal["first", "last"] = "first"
) -> datetime:
    """The UTC instant of wall-clock ``clock`` on ``day`` in ``zone`` (rules in the module
    docstring: a skipped time is the jump; a repeated one is its first or last occurrence)."""
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    last = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != naive:
        # Skipped: fold=0 reads it with the offset before the jump, fold=1 with the one
        # after; the jump lies between. Search it to the second (zones change on seconds).
        lo, hi = int(min(first, last).timestamp()), int(max(first, last).timestamp())
        before = datetime.fromtimestamp(lo, UTC).astimezone(zone).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == before:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, UTC)
    return last if occurrence == "last" else first


def local_text(moment: datetime, zone: ZoneInfo, *, weekday: bool = True) -> str:
    """``Mon 2026-12-07 09:00 CET``: a moment as people in the environment read it."""
    return moment.astimezone(zone).strftime(("%a " if weekday else "") + "%Y-%m-%d %H:%M %Z")


def _aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no time zone; pass an aware datetime")


# -- deploy windows ---------------------------------------------------------------------


def _day(text: str) -> int:
    key = text.strip().lower()
    for i, (short, full) in enumerate(zip(DAY_NAMES, _FULL_DAY_NAMES, strict=True)):
        if key in (short.lower(), full):
            return i
    raise ValueError(
        f"{text.strip()!r} is not a day of the week: use Mon, Tue, Wed, Thu, Fri, Sat or Sun, "
        "or a range such as Mon-Fri"
    )


def _parse_days(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 6 for v in value
    ):
        items = [DAY_NAMES[v] for v in value]  # 0 is Monday, as date.weekday() counts
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ValueError(f"{value!r} is not a list of days: write Mon-Fri, or [Mon, Wed, Fri]")
    days: set[int] = set()
    for part in (p for item in items for p in item.split(",")):
        first, dash, last = part.partition("-")
        a = _day(first)
        b = _day(last) if dash else a
        days.add(a)
        while a != b:  # a range may wrap the week: Fri-Mon
            a = (a + 1) % 7
            days.add(a)
    if not days:
        raise ValueError("no days given: write Mon-Fri, or [Mon, Wed, Fri]")
    return tuple(sorted(days))


def days_text(days: Iterable[int]) -> str:
    """``Mon-Fri``, ``Mon,Wed,Fri``, ``Fri-Mon``: days as people write them."""
    runs: list[list[int]] = []
    for d in sorted(set(days)):
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:
        runs = [runs[-1] + runs[0], *runs[1:-1]]
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )


_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def _parse_clock(value: Any, *, end: bool) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError(f"{value} has a time zone; the environment's timezone applies")
        return value
    if isinstance(value, bool | int | float):
        raise ValueError(
            f"{value!r} is a number, not a time of day: write it in quotes, such as "
            '"17:00" (YAML reads an unquoted 17:00 as the base-60 number 1020)'
        )
    m = _HHMM.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f'{value!r} is not a time of day: use HH:MM, such as "09:00"')
    hours, minutes = int(m.group(1)), int(m.group(2))
    if end and (hours, minutes) == (24, 0):
        return time(0)
    if hours > 23 or minutes > 59:
        raise ValueError(
            f"{value!r} is not a time of day: hours 00-23 and minutes 00-59"
            + (", or 24:00 for the end of the day" if end else "")
        )
    return time(hours, minutes)


def _start_clock(value: Any) -> time:
    return _parse_clock(value, end=False)


def _end_clock(value: Any) -> time:
    return _parse_clock(value, end=True)


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


Days = Annotated[
    tuple[int, ...], BeforeValidator(_parse_days), PlainSerializer(days_text, return_type=str)
]
StartClock = Annotated[time, BeforeValidator(_start_clock), PlainSerializer(_hhmm, return_type=str)]
EndClock = Annotated[time, BeforeValidator(_end_clock), PlainSerializer(_hhmm, return_type=str)]


class DeployWindow(_Strict):
    """Releases may start on these days from ``start`` to ``end``, local time.

    ``end`` at or before ``start`` ends the next day (22:00-06:00 crosses midnight;
    00:00-24:00 is the whole day); ``days`` are the days the window opens on.
    """

    days: Days
    start: StartClock
    end: EndClock

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def text(self) -> str:
        end = "24:00" if self.end == time(0) else _hhmm(self.end)
        return f"{days_text(self.days)} {_hhmm(self.start)}-{end}"

    def occurrence(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The window that opens on ``day`` as UTC instants; None if it does not open that
        day (not one of its days, or wholly inside the hour a spring change skips)."""
        if day.weekday() not in self.days:
            return None
        start = local_instant(day, self.start, zone)
        end_day = day + timedelta(days=1) if self.crosses_midnight else day
        end = local_instant(end_day, self.end, zone)
        return (start, end) if end > start else None


# -- freezes ----------------------------------------------------------------------------

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _whole_day(value: date | datetime) -> bool:
    return not isinstance(value, datetime)


def _parse_moment(value: Any) -> date | datetime:
    if isinstance(value, date):  # a datetime is a date too; YAML gives both
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"{value!r} is not a date or a time: use 2026-12-21 (a whole day), 2026-12-21 18:00 "
        "(the environment's local time) or 2026-12-21T18:00:00+01:00"
    )


def _moment_text(value: date | datetime) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    whole_minute = value.second == 0 and value.microsecond == 0
    return value.isoformat(sep=" ", timespec="minutes" if whole_minute else "auto")


Moment = Annotated[
    date | datetime, PlainValidator(_parse_moment), PlainSerializer(_moment_text, return_type=str)
]


class Freeze(_Strict):
    """No release starts from ``start`` to ``end``.

    A date is a whole day in the environment's time zone, both ends included; a date and
    time without an offset is the environment's local time, with one it is that instant;
    a time ``end`` is the first moment after the freeze.
    """

    start: Moment
    end: Moment
    reason: str

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a freeze needs a reason, such as 'year-end freeze'")
        return value.strip()

    @model_validator(mode="after")
    def _order(self) -> Freeze:
        s, e = self.start, self.end
        if _whole_day(s) and _whole_day(e):
            if e < s:
                raise ValueError(f"end {e} is before start {s}")
        elif isinstance(s, datetime) and isinstance(e, datetime):
            if (s.tzinfo is None) == (e.tzinfo is None) and e <= s:
                raise ValueError(f"end {_moment_text(e)} is not after start {_moment_text(s)}")
        return self  # mixed kinds are checked by the environment, which knows the zone

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The freeze as UTC instants: [start, end)."""

        def instant(value: date | datetime, occurrence: Literal["first", "last"]) -> datetime:
            if not isinstance(value, datetime):
                day = value + timedelta(days=1) if occurrence == "last" else value
                return local_instant(day, time(0), zone, occurrence)
            if value.tzinfo is not None:
                return value.astimezone(UTC)
            return local_instant(value.date(), value.time(), zone, occurrence)

        return instant(self.start, "first"), instant(self.end, "last")

    def text(self, zone: ZoneInfo) -> str:
        """``year-end freeze (2026-12-21 to 2027-01-03)``."""
        if _whole_day(self.start) and _whole_day(self.end):
            span = f"{self.start} to {self.end}"
        else:
            s, e = self.bounds(zone)
            span = f"{local_text(s, zone, weekday=False)} to {local_text(e, zone, weekday=False)}"
        return f"{self.reason} ({span})"


# -- environments and the config --------------------------------------------------------


class EnvironmentPolicy(_Strict):
    """When releases to one environment may start. No windows: always open."""

    name: str = ""  # filled in from its key in PolicyConfig
    timezone: str = "UTC"  # an IANA name, such as Europe/Berlin
    windows: tuple[DeployWindow, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    alertmanager_block: bool = True  # a firing alert for the app holds its release

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(
                f"{value!r} is not an IANA time zone name, such as 'Europe/Berlin', "
                "'America/New_York' or 'UTC'"
            ) from e
        return value

    @model_validator(mode="after")
    def _freezes(self) -> EnvironmentPolicy:
        for i, freeze in enumerate(self.freezes):
            start, end = freeze.bounds(self.zone)
            if end <= start:
                raise ValueError(
                    f"freezes.{i}: end {_moment_text(freeze.end)} is not after start "
                    f"{_moment_text(freeze.start)} in {self.timezone}"
                )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def windows_text(self, state: str = "") -> str:
        """``production window Mon-Fri 09:00-17:00 Europe/Berlin`` (+ ``is <state>``)."""
        names = " and ".join(w.text() for w in self.windows)
        several = len(self.windows) > 1
        text = (
            f"{self.name or 'environment'} window{'s' if several else ''} {names} {self.timezone}"
        )
        return f"{text} {'are' if several else 'is'} {state}" if state else text


DEFAULT_MATCHERS: Mapping[str, str] = MappingProxyType({"severity": "critical", "app": "{app}"})


class AlertmanagerSettings(_Strict):
    """Where alerts are read and which of them hold a release."""

    url: str = Field(pattern=URL)
    # label -> value, all must be equal; "{app}" in a value is the release's app
    matchers: dict[Annotated[str, Field(pattern=LABEL_NAME)], str] = Field(
        default_factory=lambda: dict(DEFAULT_MATCHERS), min_length=1
    )
    timeout: Duration = 5.0  # per request
    attempts: int = Field(default=3, ge=1, le=10)  # connection errors and 5xx are retried


EnvironmentName = Annotated[str, Field(pattern=NAME)]


class PolicyConfig(_Strict):
    """The ``policy`` section of the service config."""

    alertmanager: AlertmanagerSettings | None = None  # None: no alerts are read
    default: EnvironmentPolicy = Field(default_factory=EnvironmentPolicy)
    environments: dict[EnvironmentName, EnvironmentPolicy] = Field(default_factory=dict)

    @field_validator("environments", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        named: dict[Any, Any] = {}
        for key, env in value.items():
            if env is None:
                env = {}
            if isinstance(env, Mapping) and "name" not in env:
                env = {**env, "name": key}
            elif isinstance(env, EnvironmentPolicy) and not env.name:
                env = env.model_copy(update={"name": key})
            named[key] = env
        return named

    @field_validator("environments")
    @classmethod
    def _names_match(cls, value: dict[str, EnvironmentPolicy]) -> dict[str, EnvironmentPolicy]:
        for key, env in value.items():
            if env.name != key:
                raise ValueError(f"{key}.name {env.name!r} differs from its key {key!r}")
        return value

    def for_environment(self, name: str) -> EnvironmentPolicy:
        """The environment's policy; one the config does not name gets ``default``."""
        env = self.environments.get(name)
        return env if env is not None else self.default.model_copy(update={"name": name})


def parse_policy(data: Any, *, source: str = "policy") -> PolicyConfig:
    """The policy section from parsed YAML or JSON; InvalidInput names each bad field."""
    if data is None:
        return PolicyConfig()
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: the policy is a mapping, got {type(data).__name__}")
    try:
        return PolicyConfig.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(error_text(e, source, WORDS)) from e


# -- is the window open? ----------------------------------------------------------------


@dataclass(frozen=True)
class WindowState:
    """Whether a release may start now as far as windows and freezes go, and why."""

    open: bool
    reason: str
    next_open: datetime | None = None  # closed: when it opens (UTC); None: not within HORIZON
    closes_at: datetime | None = None  # open: when it closes (UTC); None: not within HORIZON
    freeze: Freeze | None = None  # closed by this freeze


_Frozen = tuple[Freeze, datetime, datetime]


def _covering(policy: EnvironmentPolicy, moment: datetime) -> list[tuple[datetime, datetime]]:
    zone = policy.zone
    today = moment.astimezone(zone).date()
    spans = []
    for day in (today - timedelta(days=1), today):
        for window in policy.windows:
            span = window.occurrence(day, zone)
            if span is not None and span[0] <= moment < span[1]:
                spans.append(span)
    return spans


def _outside_freezes(moment: datetime, freezes: list[_Frozen]) -> datetime:
    """The first instant from ``moment`` on that no freeze covers (freezes may touch)."""
    moved = True
    while moved:
        moved = False
        for _, start, end in freezes:
            if start <= moment < end:
                moment, moved = end, True
    return moment


def _next_open(policy: EnvironmentPolicy, now: datetime, freezes: list[_Frozen]) -> datetime | None:
    if not policy.windows:
        return _outside_freezes(now, freezes)
    zone = policy.zone
    limit = max([now + HORIZON] + [end + timedelta(days=8) for _, _, end in freezes])
    day = now.astimezone(zone).date() - timedelta(days=1)
    best: datetime | None = None
    while True:
        earliest = local_instant(day, time(0), zone)  # no window opening that day is earlier
        if earliest > limit or (best is not None and earliest > best):
            return best
        for window in policy.windows:
            span = window.occurrence(day, zone)
            if span is None or span[1] <= now:
                continue
            moment = _outside_freezes(max(span[0], now), freezes)
            if moment < span[1] and (best is None or moment < best):
                best = moment
        day += timedelta(days=1)


def _closes_at(
    policy: EnvironmentPolicy, now: datetime, freezes: list[_Frozen]
) -> tuple[datetime | None, Freeze | None]:
    end: datetime | None = None
    if policy.windows:
        end = now
        while spans := _covering(policy, end):  # windows that touch carry on
            end = max(e for _, e in spans)
            if end - now > HORIZON:
                end = None
                break
    upcoming = [(start, f) for f, start, _ in freezes if start > now]
    if upcoming:
        start, freeze = min(upcoming, key=lambda item: item[0])
        if end is None or start < end:
            return start, freeze
    return end, None


def window_open(policy: EnvironmentPolicy, now: datetime) -> WindowState:
    """Whether ``policy``'s windows and freezes let a release start at ``now`` (aware)."""
    _aware(now, "now")
    zone = policy.zone
    name = policy.name or "environment"
    freezes = [(f, *f.bounds(zone)) for f in policy.freezes]
    frozen = next((f for f, start, end in freezes if start <= now < end), None)
    in_window = not policy.windows or bool(_covering(policy, now))
    if in_window and frozen is None:
        closes, by = _closes_at(policy, now, freezes)
        if policy.windows:
            reason = policy.windows_text("open")
        elif by is None:
            reason = f"{name} has no deploy window (always open)"
        else:
            reason = f"{name} has no deploy window: open"
        if closes is not None:
            reason += f" until {local_text(closes, zone)}"
            if by is not None:
                reason += f", when a freeze starts: {by.text(zone)}"
        return WindowState(True, reason, closes_at=closes)

    opens = _next_open(policy, now, freezes)
    when = (
        f"opens {local_text(opens, zone)}"
        if opens is not None
        else f"does not open within {HORIZON.days} days"
    )
    if frozen is not None:
        reason = f"{name} is frozen: {frozen.text(zone)}; {when}"
        if policy.windows:
            reason += f" ({policy.windows_text()})"
        return WindowState(False, reason, next_open=opens, freeze=frozen)
    reason = f"{policy.windows_text('closed')}; {when}"
    unfrozen = _next_open(policy, now, [])
    if opens is not None and unfrozen is not None and opens > unfrozen:
        delaying = [f.text(zone) for f, start, end in freezes if start < opens and end > now]
        if delaying:
            several = "freezes" if len(delaying) > 1 else "a freeze"
            reason += f", after {several}: {' and '.join(delaying)}"
    return WindowState(False, reason, next_open=opens)


# -- alerts -----------------------------------------------------------------------------


def quote_label_value(value: str) -> str:
    """A label value in double quotes, as Alertmanager's matchers and PromQL read it."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class Alert(_Strict):
    """One firing alert, as Alertmanager reports it."""

    labels: dict[str, str]
    starts_at: datetime | None = None
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "(no alertname)")

    def text(self) -> str:
        """``ShopErrors{app="shop", severity="critical"}``: its name and labels."""
        labels = ", ".join(
            f"{k}={quote_label_value(v)}"
            for k, v in sorted(self.labels.items())
            if k != "alertname"
        )
        return f"{self.name}{{{labels}}}"

    def since(self) -> str:
        """`` since 2026-12-04 10:00 UTC``, or nothing when the start is not known."""
        if self.starts_at is None:
            return ""
        return f" since {self.starts_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


class AlertState(_Strict):
    """The alerts that hold an app's releases, or why they could not be read."""

    source: str  # the Alertmanager URL
    app: str
    alerts: tuple[Alert, ...] = ()
    error: str | None = None  # set: Alertmanager did not answer; the state is unknown

    @property
    def known(self) -> bool:
        return self.error is None

    def text(self, most: int = 5) -> str:
        if len(self.alerts) == 1:
            alert = self.alerts[0]
            return f"alert {alert.text()} is firing for {self.app}{alert.since()}"
        shown = "; ".join(a.text() + a.since() for a in self.alerts[:most])
        more = f"; and {len(self.alerts) - most} more" if len(self.alerts) > most else ""
        return f"{len(self.alerts)} alerts are firing for {self.app}: {shown}{more}"


# -- may this release start? ------------------------------------------------------------


class ReleaseRequest(_Strict):
    """What the policy needs to know of a submitted or active release."""

    release_id: str
    app: str
    environment: str
    submitted_at: AwareDatetime
    expedited: bool = False
    expedited_approved: bool = False  # an engineering lead or the CTO approved it

    @model_validator(mode="after")
    def _check(self) -> ReleaseRequest:
        if self.expedited_approved and not self.expedited:
            raise ValueError(f"{self.release_id}: expedited_approved is set but expedited is false")
        return self

    @classmethod
    def of_spec(
        cls, spec: ReleaseSpec, submitted_at: datetime, *, expedited_approved: bool = False
    ) -> ReleaseRequest:
        return cls(
            release_id=spec.release_id,
            app=spec.app,
            environment=spec.environment,
            submitted_at=submitted_at,
            expedited=spec.expedited,
            expedited_approved=expedited_approved,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.app, self.environment)

    @property
    def approved_hotfix(self) -> bool:
        return self.expedited and self.expedited_approved


def queue_order(release: ReleaseRequest) -> tuple[bool, datetime, str]:
    """Approved expedited hotfixes first, so a hotfix never waits behind a release that
    waits for its window; then submission order."""
    return (not release.approved_hotfix, release.submitted_at, release.release_id)


Cause = Literal["active", "queue", "approval", "window", "freeze", "alert", "alerts-unknown"]


class Decision(_Strict):
    """Start the release now, or leave it queued; the reason names the values."""

    action: Literal["start", "queue"]
    reason: str
    cause: Cause | None = None  # why it stays queued
    not_before: datetime | None = None  # cause window or freeze: when the window opens

    @property
    def starts(self) -> bool:
        return self.action == "start"


def _ids(releases: list[ReleaseRequest], most: int = 3) -> str:
    shown = ", ".join(r.release_id for r in releases[:most])
    return shown + (f" and {len(releases) - most} more" if len(releases) > most else "")


def decide_start(
    release: ReleaseRequest,
    *,
    active: Iterable[ReleaseRequest],
    queue: Iterable[ReleaseRequest],
    window: WindowState,
    alerts: AlertState | None = None,
) -> Decision:
    """Whether ``release`` starts now.

    ``active``: releases running now; ``queue``: releases waiting (this one may be among
    them); both may hold every app and environment. ``window``: ``window_open`` of the
    release's environment now. ``alerts``: the app's alerts; None when not consulted (the
    environment's ``alertmanager_block`` is off, or no Alertmanager is configured).

    In this order: another active release of the app in the environment, a release ahead
    in its queue, a missing expedited approval, a closed window or a freeze, a firing or
    unknown alert. An approved expedited hotfix passes the last two, never the first two.
    """
    rid, where = release.release_id, f"{release.app} in {release.environment}"
    busy = sorted(
        (r for r in active if r.key == release.key and r.release_id != rid),
        key=lambda r: r.release_id,
    )
    if busy:
        return Decision(
            action="queue",
            cause="active",
            reason=f"{rid} queued: {_ids(busy)} is active for {where} "
            "(one release per app and environment)",
        )
    mine = queue_order(release)
    ahead = sorted(
        (
            r
            for r in queue
            if r.key == release.key and r.release_id != rid and queue_order(r) < mine
        ),
        key=queue_order,
    )
    if ahead:
        return Decision(
            action="queue",
            cause="queue",
            reason=f"{rid} queued: position {len(ahead) + 1} for {where}, behind {_ids(ahead)}",
        )
    if release.expedited and not release.expedited_approved:
        also = "" if window.open else f" ({window.reason})"
        return Decision(
            action="queue",
            cause="approval",
            reason=f"expedited hotfix {rid} waits for approval by an engineering lead or the "
            f"CTO{also}",
        )
    hotfix = release.approved_hotfix
    exempt: list[str] = []
    if not window.open:
        if not hotfix:
            return Decision(
                action="queue",
                cause="freeze" if window.freeze is not None else "window",
                reason=f"{rid} queued: {window.reason}",
                not_before=window.next_open,
            )
        exempt.append(f"outside its window: {window.reason}")
    if alerts is not None and not alerts.known:
        unknown = (
            f"the alerts of {release.app} could not be read from Alertmanager at "
            f"{alerts.source}: {alerts.error}"
        )
        if not hotfix:
            return Decision(
                action="queue",
                cause="alerts-unknown",
                reason=f"{rid} held: {unknown}; it does not start while they are unknown",
            )
        exempt.append(f"although {unknown}")
    elif alerts is not None and alerts.alerts:
        if not hotfix:
            return Decision(
                action="queue",
                cause="alert",
                reason=f"{rid} held: {alerts.text()} (Alertmanager at {alerts.source}); "
                "it starts once resolved",
            )
        exempt.append(f"despite {alerts.text()}")
    if exempt:
        return Decision(
            action="start", reason=f"approved expedited hotfix {rid} starts " + "; ".join(exempt)
        )
    checked = "" if alerts is None else f"; no alert is firing for {release.app}"
    return Decision(action="start", reason=f"{rid} starts: {window.reason}{checked}")
