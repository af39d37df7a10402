"""`gatekeeper reject`: a rejected approval rolls the release back (or ends a queued one
aborted), names who and why, and refuses a role the step does not take."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.engine.control import reject
from gatekeeper.engine.executor import new_record
from gatekeeper.store.factory import open_store
from strategies.registry import plan_for
from tests.support.fakes import T0


def spec() -> ReleaseSpec:
    return parse_release(
        {
            "app": "shop",
            "environment": "prod",
            "version": "v2",
            "command": "svc --port {port}",
            "stable": {"version": "v1", "command": "svc --port {port}"},
            "strategy": {"type": "canary", "steps": [50, 100]},
            "approvals": ["shift-100"],
        }
    )


def stored(tmp_path: Path, phase: Phase) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    s = spec()
    store = open_store(url)
    try:
        record = new_record(s, plan_for(s), T0)
        if phase is Phase.QUEUED:  # as the service stores a release it queues
            record = replace(record, phase=Phase.QUEUED)
        store.create_release(record)
        if phase not in (Phase.PENDING, Phase.QUEUED):
            store.set_phase(s.release_id, phase, f"now {phase.value}")
    finally:
        store.close()
    return url


def phase_of(url: str) -> tuple[Phase, str]:
    store = open_store(url)
    try:
        record = store.get_release(spec().release_id)
        assert record is not None
        return record.phase, record.reason
    finally:
        store.close()


def test_a_rejection_of_a_running_release_rolls_it_back_with_who_and_why(tmp_path: Path) -> None:
    url = stored(tmp_path, Phase.HOLDING)
    said = reject(
        "shop-prod-v2",
        "approve-shift-100",
        by="rm",
        role="release-manager",
        comment="error budget spent",
        db_url=url,
    )
    assert said == "approve-shift-100 rejected by rm (release-manager): error budget spent"
    assert phase_of(url) == (Phase.ROLLING_BACK, said)


def test_a_rejection_of_a_queued_release_ends_it_aborted(tmp_path: Path) -> None:
    url = stored(tmp_path, Phase.QUEUED)
    said = reject("shop-prod-v2", "approve-shift-100", by="rm", role="release-manager", db_url=url)
    assert phase_of(url) == (Phase.ABORTED, said)


@pytest.mark.parametrize(
    ("step", "role", "words"),
    [
        ("shift-100", "release-manager", "is not an approval step"),
        ("approve-shift-100", "developer", "which does not count"),
    ],
)
def test_a_rejection_the_step_does_not_take_is_refused_and_changes_nothing(
    tmp_path: Path, step: str, role: str, words: str
) -> None:
    url = stored(tmp_path, Phase.HOLDING)
    with pytest.raises(InvalidInput, match=words):
        reject("shop-prod-v2", step, by="dev", role=role, db_url=url)
    assert phase_of(url) == (Phase.HOLDING, "now holding")
