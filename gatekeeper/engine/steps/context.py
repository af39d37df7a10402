"""What every step works with: the release, where it runs, its gates and its record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity

from gatekeeper.domain.clock import Clock
from gatekeeper.domain.errors import TemporaryError
from gatekeeper.domain.release import ReleaseSpec
from gatekeeper.targets.base import TrafficRouter, VersionRun, Workloads

from ..judge import Judge
from ..records import Recorder


@dataclass
class StepContext:
    spec: ReleaseSpec
    workloads: Workloads
    router: TrafficRouter
    judge: Judge
    recorder: Recorder
    clock: Clock
    on_deployed: Callable[[list[str]], None] | None = None
    metrics_timeout_s: float = 60.0
    notes: dict[str, object] = field(default_factory=dict)

    def stable_run(self) -> VersionRun:
        s = self.spec.stable
        return VersionRun(version=s.version, command=s.command, image=s.image)

    def candidate_run(self) -> VersionRun:
        s = self.spec
        return VersionRun(version=s.version, command=s.command, image=s.image)

    def traffic(self) -> None:
        """Record where traffic actually goes now."""
        self.recorder.traffic(self.workloads.state())

    def retrying(self, action: Callable[[], None]) -> None:
        """A target action retried on TemporaryError, with backoff, for up to a minute."""
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TemporaryError),
            stop=tenacity.stop_after_delay(60) | tenacity.stop_after_attempt(20),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=5),
            sleep=self.clock.sleep,
            reraise=True,
        ):
            with attempt:
                action()
