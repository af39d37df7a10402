"""What a progress display hears while a release runs."""

from __future__ import annotations

from typing import Protocol

from gatekeeper.domain.plan import Step
from gatekeeper.domain.verdicts import GateResult
from gatekeeper.targets.base import TargetState


class Listener(Protocol):
    def step(self, index: int, total: int, step: Step) -> None: ...

    def event(self, kind: str, message: str) -> None: ...

    def gates(self, results: list[GateResult]) -> None: ...

    def traffic(self, state: TargetState) -> None: ...


class QuietListener:
    def step(self, index: int, total: int, step: Step) -> None:
        pass

    def event(self, kind: str, message: str) -> None:
        pass

    def gates(self, results: list[GateResult]) -> None:
        pass

    def traffic(self, state: TargetState) -> None:
        pass
