"""A rolling release whose target runs no candidate replica before its first batch (Kubernetes:
a candidate Deployment at 0 replicas) waits for the candidate's metrics at that batch, not at
the deploy step, where there is nothing to scrape; and every batch waits for its new
replicas' first scrape before its traffic is judged."""

from __future__ import annotations

from pathlib import Path

from gatekeeper.domain.plan import Analyze, DeployCandidate, Plan, Promote, ScaleBatch
from gatekeeper.domain.release import Phase
from tests.support.fakes import FakeProvider
from tests.unit.test_executor import Harness, spec, traffic


class NoReplicaAtZero(Harness):
    """The fake target, with no candidate endpoint while the candidate runs at 0%."""

    def __init__(self, tmp: Path) -> None:
        s = spec(strategy={"type": "rolling", "batches": [50, 100]})
        plan = Plan(
            release=s.release_id,
            strategy="rolling",
            steps=(
                DeployCandidate(name="deploy", scale_percent=0),
                ScaleBatch(name="batch-50", percent=50),
                Analyze(name="analyze-batch-50", duration=300),
                ScaleBatch(name="batch-100", percent=100),
                Analyze(name="analyze-batch-100", duration=300),
                Promote(name="promote"),
            ),
        )
        super().__init__(tmp, s, plan, FakeProvider(traffic(0.001)))
        target = self.target
        endpoints = target.metrics_endpoints

        def no_replica(version: str | None = None) -> list[str]:
            found = endpoints(version)
            if target.state_.candidate_scale_percent == 0 and version == s.version:
                return []
            return found

        target.metrics_endpoints = no_replica  # type: ignore[method-assign]


def test_a_rolling_candidate_without_replicas_is_awaited_at_its_first_batch(
    tmp_path: Path,
) -> None:
    h = NoReplicaAtZero(tmp_path)

    out = h.executor().run()

    assert out.phase is Phase.PROMOTED, out.reason
    events = [(e.kind, e.message) for e in h.store.events(h.spec.release_id)]
    metrics = [m for kind, m in events if kind == "metrics"]
    assert metrics[0] == (
        "default/shop@v2 runs no replica yet: its metrics are awaited at its first batch"
    )
    # and each batch waits until its new replicas are scraped, before its shift is recorded
    assert len(metrics) == 3, metrics
    for batch, seen in (("batch-50", metrics[1]), ("batch-100", metrics[2])):
        assert seen.startswith("default/shop@v2 seen by fake"), seen
        started = next(
            i for i, e in enumerate(events) if e[0] == "step-started" and e[1].startswith(batch)
        )
        shifted = next(i for i, e in enumerate(events) if i > started and e[0] == "shift")
        assert started < events.index(("metrics", seen), started) < shifted, events
