"""Windows and Mann-Whitney sample intervals checked against the scrape interval at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput
from gates.evaluate import GateEvaluator
from gates.profiles import Profile, get_profile
from gates.provider import Subject
from gates.scraper import ScraperProvider
from gates.spec import GateSet, parse_gate_set
from tests.support.fakes import FakeProvider

STABLE = Subject("shop", "v1")


@dataclass
class ScrapeFake(FakeProvider):
    """A provider whose app-wide and per-subject scrape intervals differ."""

    global_s: float | None = 1.0
    per_subject: dict[Subject, float] = field(default_factory=dict)
    asked: list[Subject | None] = field(default_factory=list)

    def scrape_interval(self) -> float | None:
        self.asked.append(None)
        return self.global_s

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        self.asked.append(subject)
        return self.per_subject.get(subject, self.global_s)


def _fake(**kw: Any) -> ScrapeFake:
    return ScrapeFake(traffic=lambda s, start, end: None, **kw)


def _mw(interval: str, window: str = "10m") -> GateSet:
    return parse_gate_set(
        {
            "gates": [
                {
                    "name": "mw",
                    "kind": "mann_whitney",
                    "metric": "error_ratio",
                    "window": window,
                    "interval": interval,
                }
            ]
        }
    )


def test_mann_whitney_interval_under_two_scrapes_is_refused_naming_gate_interval_limit() -> None:
    with pytest.raises(InvalidInput) as e:
        GateEvaluator(_mw("20s"), _fake(global_s=15.0))
    assert str(e.value) == (
        "gate 'mw': sample interval 20s is shorter than two scrape intervals (2 x 15s); "
        "a sample counted over it would see one scrape at most"
    )


def test_mann_whitney_interval_of_exactly_two_scrapes_is_accepted() -> None:
    GateEvaluator(_mw("30s"), _fake(global_s=15.0))


def test_threshold_gate_interval_is_how_often_it_runs_and_is_not_checked() -> None:
    gates = parse_gate_set(
        {
            "gates": [
                {
                    "name": "abort",
                    "metric": "error_ratio",
                    "threshold": 0.05,
                    "window": "2m",
                    "interval": "250ms",
                }
            ]
        }
    )
    GateEvaluator(gates, _fake(global_s=15.0))


def test_mann_whitney_interval_is_not_checked_when_windows_are_not() -> None:
    GateEvaluator(_mw("20s"), _fake(global_s=15.0), check_windows=False)


def test_with_a_subject_the_subjects_scrape_interval_is_the_limit() -> None:
    provider = _fake(global_s=30.0, per_subject={STABLE: 15.0})
    GateEvaluator(_mw("30s"), provider, subject=STABLE)  # 2 x 30s would refuse it
    assert provider.asked == [STABLE]
    with pytest.raises(InvalidInput, match=r"\(2 x 15s\)"):
        GateEvaluator(_mw("20s"), provider, subject=STABLE)


def test_without_a_subject_the_old_call_asks_the_provider_wide_interval() -> None:
    provider = _fake(global_s=30.0, per_subject={STABLE: 15.0})
    with pytest.raises(InvalidInput, match=r"sample interval 30s .* \(2 x 30s\)"):
        GateEvaluator(_mw("30s", window="20m"), provider)
    assert provider.asked == [None]


def test_the_scraper_scrapes_every_subject_at_its_interval() -> None:
    scraper = ScraperProvider([], interval_s=2.5)
    try:
        assert scraper.scrape_interval_for(get_profile("http"), STABLE) == 2.5
    finally:
        scraper.close()
