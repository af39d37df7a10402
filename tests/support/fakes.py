"""Fakes at our own wrappers: a clock, a provider, a target. Never at HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from gatekeeper.targets.base import Health, TargetState, VersionRun
from gates.profiles import Profile
from gates.provider import Buckets, Counts, LabeledValue, Subject

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class TickingClock:
    """A clock whose ``now`` is read from a function (a fixed time, a list of ticks)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now()

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


@dataclass
class FakeProvider:
    """Counts from a traffic function: (subject, window start, window end) -> Counts."""

    traffic: Callable[[Subject, datetime, datetime], Counts | None]
    name: str = "fake"
    calls: int = 0
    up: bool = True  # every /metrics answers
    # (window, start, end, step) of every counts_range call, in order
    range_calls: list[tuple[float, datetime, datetime, float]] = field(default_factory=list)

    def scrape_interval(self) -> float | None:
        return None

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        return self.scrape_interval()

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        return {e: self.up for e in endpoints}

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        self.calls += 1
        out = {}
        for s in subjects:
            c = self.traffic(s, at - timedelta(seconds=window_s), at)
            if c is not None:
                out[s] = c
        return out

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        self.calls += 1
        self.range_calls.append((window_s, start, end, step_s))
        out: dict[Subject, list[tuple[datetime, Counts]]] = {}
        t = start
        while t <= end + timedelta(microseconds=1):
            for s in subjects:
                c = self.traffic(s, t - timedelta(seconds=window_s), t)
                if c is not None:
                    out.setdefault(s, []).append((t, c))
            t += timedelta(seconds=step_s)
        return out

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        self.calls += 1
        out: dict[Subject, Buckets] = {}
        for s in subjects:
            c = self.traffic(s, at - timedelta(seconds=window_s), at)
            if c is not None:
                out[s] = ((0.1, c.requests * 0.99), (0.5, c.requests), (float("inf"), c.requests))
        return out

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        raise NotImplementedError


@dataclass
class FakeTarget:
    """Holds its state across 'crashes' the way real processes outlive the controller."""

    name: str = "fake"
    state_: TargetState = field(
        default_factory=lambda: TargetState(
            stable_version=None,
            candidate_version=None,
            candidate_weight=0,
            candidate_scale_percent=0,
            stable_scale_percent=0,
            candidate_ready=False,
        )
    )
    calls: list[tuple[str, object]] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)  # every change of weight, in order
    problems: dict[str, tuple[str, ...]] = field(default_factory=dict)  # P0, by version

    def state(self) -> TargetState:
        return self.state_

    def ensure_stable(self, stable: VersionRun) -> None:
        if self.state_.stable_version is None:
            self.calls.append(("ensure_stable", stable.version))
            self.state_ = replace(
                self.state_, stable_version=stable.version, stable_scale_percent=100
            )

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        if (
            self.state_.candidate_version == candidate.version
            and self.state_.candidate_scale_percent == scale_percent
        ):
            return
        self.calls.append(("deploy", scale_percent))
        self.state_ = replace(
            self.state_,
            candidate_version=candidate.version,
            candidate_scale_percent=scale_percent,
            candidate_ready=True,
        )

    def set_weight(self, weight: int) -> None:
        self.calls.append(("weight", weight))  # every call: a repeated shift must show
        if self.state_.candidate_weight == weight:
            return
        self.weights.append(weight)
        self.state_ = replace(self.state_, candidate_weight=weight)

    def scale_stable(self, percent: int) -> None:
        self.calls.append(("scale_stable", percent))
        self.state_ = replace(self.state_, stable_scale_percent=percent)

    def preview_url(self) -> str:
        return "http://127.0.0.1:9/"

    def traffic_url(self) -> str:
        return "http://127.0.0.1:9/"

    def promote(self, scale_down_delay_s: float) -> None:
        if self.state_.candidate_version is None:
            return
        self.calls.append(("promote", scale_down_delay_s))
        self.state_ = replace(
            self.state_,
            stable_version=self.state_.candidate_version,
            candidate_version=None,
            candidate_weight=0,
            candidate_scale_percent=0,
            stable_scale_percent=100,
        )

    def rollback(self) -> None:
        self.calls.append(("rollback", None))
        if self.state_.candidate_weight != 0:
            self.weights.append(0)
        self.state_ = replace(
            self.state_,
            candidate_version=None,
            candidate_weight=0,
            candidate_scale_percent=0,
            stable_scale_percent=100,
            candidate_ready=False,
        )

    def metrics_endpoints(self, version: str | None = None) -> list[str]:
        running = {
            v: f"127.0.0.1:{9100 + i}"
            for i, v in enumerate((self.state_.stable_version, self.state_.candidate_version))
            if v is not None
        }
        return [e for v, e in running.items() if version is None or v == version]

    def health(self, version: str) -> Health:
        return Health(self.problems.get(version, ()))

    def close(self) -> None:
        pass
