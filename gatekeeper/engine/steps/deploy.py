"""deploy: the candidate runs beside stable, without traffic, until its /metrics is scraped."""

from __future__ import annotations

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.plan import DeployCandidate
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext


def run(release: ReleaseSpec, step: DeployCandidate, ctx: StepContext) -> None:
    ctx.workloads.deploy_candidate(ctx.candidate_run(), step.scale_percent)
    if ctx.on_deployed:
        ctx.on_deployed(ctx.workloads.metrics_endpoints())
    if step.scale_percent == 0 and not ctx.workloads.metrics_endpoints(release.version):
        # Rolling on Kubernetes: the candidate has no replica before its first batch, so
        # there is nothing to scrape yet; the first batch waits for its metrics.
        ctx.recorder.event(
            "metrics",
            f"{ctx.judge.gates.release.candidate} runs no replica yet: its metrics are "
            "awaited at its first batch",
        )
        return
    await_metrics(release, ctx)


def await_metrics(release: ReleaseSpec, ctx: StepContext) -> None:
    """Before any traffic, wait (bounded) until the candidate's /metrics is scraped, so
    the gates see its first requests instead of a discovery delay.

    Scraped, not "its request series exist": client libraries create a labelled
    counter at its first request, and the candidate gets none before the first shift.
    """
    gates = ctx.judge.gates
    evaluator = gates.evaluator
    candidate = gates.release.candidate
    start = ctx.clock.now()
    while True:
        endpoints = ctx.workloads.metrics_endpoints(release.version)
        if evaluator.scraped(endpoints, ctx.clock.now()):
            break
        waited = (ctx.clock.now() - start).total_seconds()
        if waited >= ctx.metrics_timeout_s:
            limit = human_duration(ctx.metrics_timeout_s)
            where = ", ".join(endpoints) or "no endpoint"
            raise StepFailed(
                f"deploy: {evaluator.provider.name} has not seen {candidate}'s metrics "
                f"({where}) after {human_duration(waited)} (limit {limit}); without them "
                "no gate can judge it: is its /metrics scraped?"
            )
        ctx.clock.sleep(ctx.judge.tick_s)
    waited = (ctx.clock.now() - start).total_seconds()
    ctx.recorder.event(
        "metrics", f"{candidate} seen by {evaluator.provider.name} after {human_duration(waited)}"
    )
