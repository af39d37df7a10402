"""The local router reads the weight back after setting it: a router that does not answer is a
temporary error (retried), a weight that did not take is a failed step."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gatekeeper.domain.errors import StepFailed, TemporaryError
from gatekeeper.domain.traffic import WeightRule
from gatekeeper.targets.base import TargetState
from gatekeeper.targets.routers.local import LocalRouter
from tests.support.fakes import FakeTarget


class Flaky(FakeTarget):
    """Its router's admin API fails ``down`` reads; ``stuck`` keeps the weight from moving."""

    def __init__(self, down: int = 0, stuck: bool = False) -> None:
        super().__init__()
        self.down, self.stuck = down, stuck

    def set_weight(self, weight: int) -> None:
        if not self.stuck:
            super().set_weight(weight)

    def state(self) -> TargetState:
        if self.down > 0:
            self.down -= 1
            return replace(self.state_, details={"router": "down"})
        return replace(self.state_, details={"router": "up"})


def test_a_weight_that_reads_back_is_set() -> None:
    router = LocalRouter(Flaky())
    router.set_weight(25)
    assert router.weight() == 25 and router.verify_weight(25)
    assert router.ability.rule is WeightRule.ANY


def test_a_router_that_does_not_answer_the_read_back_is_a_temporary_error() -> None:
    with pytest.raises(TemporaryError, match="did not answer the read-back"):
        LocalRouter(Flaky(down=1)).set_weight(25)


def test_a_weight_that_did_not_take_fails_the_step() -> None:
    with pytest.raises(StepFailed, match="the candidate's weight reads 0% after setting 25%"):
        LocalRouter(Flaky(stuck=True)).set_weight(25)
