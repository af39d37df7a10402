"""The phase machine: the allowed moves, written once; final phases are never left."""

from __future__ import annotations

import pytest

from gatekeeper.domain.phases import TRANSITIONS, PhaseConflict, allowed, sources
from gatekeeper.domain.release import Phase

LIVE = [p for p in Phase if not p.final]
FINAL = [p for p in Phase if p.final]


@pytest.mark.parametrize("final", FINAL, ids=str)
def test_a_final_phase_is_never_left(final: Phase) -> None:
    assert TRANSITIONS[final] == frozenset()
    assert not any(allowed(final, p) for p in Phase)


@pytest.mark.parametrize("live", LIVE, ids=str)
def test_an_abort_or_a_failure_is_reachable_from_every_live_phase(live: Phase) -> None:
    assert allowed(live, Phase.ABORTED) and allowed(live, Phase.FAILED)


def test_a_decided_rollback_is_never_undone() -> None:
    for back in (Phase.PENDING, Phase.RUNNING, Phase.HOLDING, Phase.PROMOTED):
        assert not allowed(Phase.ROLLING_BACK, back)


def test_promotion_only_from_running_or_holding() -> None:
    assert sources(Phase.PROMOTED) == {Phase.RUNNING, Phase.HOLDING}


def test_sources_narrow_to_what_the_writer_expected() -> None:
    assert sources(Phase.HOLDING, [Phase.RUNNING, Phase.ABORTED]) == {Phase.RUNNING}


def test_the_machine_names_every_phase() -> None:
    assert set(TRANSITIONS) == set(Phase)


def test_a_conflict_says_where_the_release_is() -> None:
    e = PhaseConflict("shop-prod-v2", Phase.ABORTED, Phase.HOLDING)
    assert str(e) == "release shop-prod-v2: cannot move from aborted to holding (it has ended)"
