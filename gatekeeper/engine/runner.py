"""Runs one release on the embedded default: load, plan, store, target, gates, execute."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.domain.clock import SYSTEM_CLOCK
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.exits import for_phase
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.store.base import Approval, Event, Store
from gatekeeper.store.factory import open_store
from gatekeeper.targets.base import Target, TrafficRouter
from gatekeeper.targets.factory import workloads_for
from gatekeeper.targets.routers.factory import router_for
from gates.evaluate import GateEvaluator, Release
from gates.live import LiveGates
from gates.provider import Provider, Subject
from gates.spec import GateSet

from .argo_settings import ArgoSettings
from .executor import Clock, Listener, LocalExecutor, Outcome, new_record
from .specs import data_home, load_release_file, resolve_gates, validate

__all__ = [
    "RunOptions",
    "data_home",
    "load_release_file",
    "outcome_exit_code",
    "resolve_gates",
    "run_release",
    "target_dir",
    "validate",
]

if TYPE_CHECKING:
    from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
    from gatekeeper.targets.local.target import LocalProcessTarget


@dataclass
class RunOptions:
    prometheus_url: str | None = None
    db_url: str | None = None
    approve: Sequence[tuple[str, str]] = ()  # (role, name): approves steps that role may approve
    listener: Listener | None = None
    clock: Clock | None = None
    state_dir: Path | None = None
    scrape_interval_s: float = 1.0
    stop_requested: Callable[[], bool] = lambda: False
    shutdown_target: bool = False  # stop every process at the end (demo, tests)
    metrics_timeout_s: float = 60.0  # how long the deploy step waits for the candidate's scrape
    kubeconfig: str | None = None  # kubernetes target: else KUBECONFIG, ~/.kube/config, in-cluster
    argo: ArgoSettings | None = None  # executor argo: argo-server and the step pods' settings
    store: Store | None = None  # an open store to use (the service's, fenced); else db_url's


def run_release(spec: ReleaseSpec, options: RunOptions, base_dir: Path | None = None) -> Outcome:
    """Run (or resume) one release to its end. Every check that can refuse the release
    runs before anything is written or started."""
    plan, gate_set = validate(spec, base_dir)
    _check_approvers(plan, options.approve)
    if spec.executor == "argo":
        return _run_on_argo(spec, plan, options)
    state_dir = _state_dir(spec, options)
    # A Kubernetes target is reached and checked (read only) before anything is written: a
    # missing kubeconfig, Deployment or route is invalid input, not a failed release.
    cluster = (
        kubernetes_target(spec, state_dir, options) if spec.target.type == "kubernetes" else None
    )
    try:
        provider, sync, close_provider = provider_for(spec, options, state_dir)
        try:
            evaluator = evaluator_for(spec, gate_set, provider)
            store = options.store or open_store(options.db_url)
            try:
                record = submit_or_resume(store, spec, plan)
                if record.phase.final:
                    return Outcome(spec.release_id, record.phase, record.reason)
                _pre_approve(store, spec, plan, options.approve)
                return _execute(
                    spec, plan, store, record, evaluator, state_dir, sync, options, cluster
                )
            finally:
                if options.store is None:
                    store.close()
        finally:
            close_provider()
    finally:
        if cluster is not None:
            cluster.close()  # closing twice is harmless


def with_executor(spec: ReleaseSpec, executor: str | None) -> ReleaseSpec:
    """The spec with its executor replaced (``--executor``), checked again as a whole."""
    if executor is None or executor == spec.executor:
        return spec
    from gatekeeper.domain.release import parse_release

    data = spec.model_dump(mode="json", exclude_none=True)
    data["executor"] = executor
    return parse_release(data, source=f"release {spec.release_id} with --executor {executor}")


def _run_on_argo(spec: ReleaseSpec, plan: Plan, options: RunOptions) -> Outcome:
    """The release as an Argo Workflow: checked (target read only, Prometheus answering,
    argo-server settings) before anything is written, then submitted and followed."""
    from .argo_executor import run_on_argo

    if options.argo is None:
        raise InvalidInput(
            f"release {spec.release_id}: executor argo needs argo-server's URL "
            "(--argo-server or GATEKEEPER_ARGO_SERVER)"
        )
    if not options.prometheus_url:
        raise InvalidInput(
            f"release {spec.release_id}: executor argo needs a Prometheus URL (--prometheus): "
            "each step runs in its own pod, and pods share no built-in scraper"
        )
    state_dir = _state_dir(spec, options)
    kubernetes_target(spec, state_dir, options).close()
    _provider, _sync, close_provider = provider_for(spec, options, state_dir)
    close_provider()  # answered: the step pods query it themselves
    store = options.store or open_store(options.db_url)
    try:
        record = submit_or_resume(store, spec, plan)
        if record.phase.final:
            return Outcome(spec.release_id, record.phase, record.reason)
        _pre_approve(store, spec, plan, options.approve)
        return run_on_argo(
            spec,
            plan,
            store,
            options.argo,
            db_url=options.db_url,
            prometheus_url=options.prometheus_url,
            listener=options.listener,
        )
    finally:
        if options.store is None:
            store.close()


def kubernetes_target(
    spec: ReleaseSpec, state_dir: Path, options: RunOptions
) -> LocalProcessTarget | KubernetesWorkloads:
    """The kubernetes workloads with their router attached, checked read-only (InvalidInput
    naming each problem: the stable Deployment, its labels, the Service, the route)."""
    target = workloads_for(spec, state_dir, kubeconfig=options.kubeconfig)
    try:
        router_for(spec, target)  # attaches itself to the workloads
        preflight = getattr(target, "preflight", None)
        if preflight is not None:
            preflight()
    except BaseException:
        target.close()
        raise
    return target


def _execute(
    spec: ReleaseSpec,
    plan: Plan,
    store: Store,
    record: Any,
    evaluator: GateEvaluator,
    state_dir: Path,
    sync: Callable[[list[str]], None],
    options: RunOptions,
    cluster: LocalProcessTarget | KubernetesWorkloads | None = None,
) -> Outcome:
    target = cluster or workloads_for(spec, state_dir)
    try:
        clock = options.clock
        live = live_gates(spec, evaluator, record.created_at, clock)
        executor = LocalExecutor(
            spec=spec,
            plan=plan,
            store=store,
            target=target,
            router=_router(spec, target),
            gates=live,
            clock=clock,
            listener=options.listener,
            on_deployed=sync,
            stop_requested=options.stop_requested,
            metrics_timeout_s=options.metrics_timeout_s,
        )
        return executor.run()
    finally:
        if options.shutdown_target:
            target.shutdown()
        target.close()


def _router(spec: ReleaseSpec, target: Target) -> TrafficRouter:
    """The kubernetes router attached to its workloads already; the local one over its
    target."""
    attached = getattr(target, "router", None)
    if spec.target.type == "kubernetes" and attached is not None:
        return attached  # type: ignore[no-any-return]
    return router_for(spec, target)


def live_gates(
    spec: ReleaseSpec, evaluator: GateEvaluator, started: datetime, clock: Clock | None
) -> LiveGates:
    """The gates of one release, judged as of the clock's now."""
    release = Release(
        candidate=Subject(spec.app, spec.version, _namespace(spec)),
        baseline=Subject(spec.app, spec.stable.version, _namespace(spec)),
        started=started,
    )
    return LiveGates(evaluator, release, clock=clock or SYSTEM_CLOCK)


def evaluator_for(spec: ReleaseSpec, gate_set: GateSet, provider: Provider) -> GateEvaluator:
    """Refuses windows under two scrapes of the job that scrapes the app."""
    return GateEvaluator(
        gate_set, provider, subject=Subject(spec.app, spec.stable.version, _namespace(spec))
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _namespace(spec: ReleaseSpec) -> str:
    return getattr(spec.target, "namespace", "default")


def submit_or_resume(store: Store, spec: ReleaseSpec, plan: Plan) -> Any:
    existing = store.get_release(spec.release_id)
    if existing is not None:
        if existing.phase.final:
            return existing
        if existing.phase is Phase.QUEUED:
            raise InvalidInput(
                f"release {spec.release_id} is queued in gatekeeper serve ({existing.reason}); "
                "the service starts it when its turn, window and approvals allow"
            )
        if existing.plan != plan.model_dump(mode="json"):
            raise InvalidInput(
                f"release {spec.release_id} is in progress with another plan; "
                "finish or abort it before changing its spec"
            )
        return existing
    now = _utcnow()
    record = new_record(spec, plan, now)
    store.create_release(record)
    store.record_event(
        Event(
            release_id=spec.release_id,
            at=now,
            kind="submitted",
            message=f"{spec.app} {spec.version} ({spec.strategy.type}) submitted"
            + (f"; expedited: {spec.expedited_reason}" if spec.expedited else ""),
        )
    )
    return store.get_release(spec.release_id)


def _pre_approve(
    store: Store, spec: ReleaseSpec, plan: Plan, approve: Sequence[tuple[str, str]]
) -> None:
    if not approve:
        return
    have = {(a.step, a.approver) for a in store.approvals(spec.release_id)}
    for step in plan.steps:
        if not isinstance(step, WaitForApproval):
            continue
        for role, name in approve:
            if step.accepts(step.name, role) and (step.name, name) not in have:
                store.add_approval(
                    Approval(
                        release_id=spec.release_id,
                        step=step.name,
                        approver=name,
                        role=role,
                        at=_utcnow(),
                        comment="approved on the command line",
                    )
                )


def _state_dir(spec: ReleaseSpec, options: RunOptions) -> Path:
    return target_dir(spec, options.state_dir)


def target_dir(spec: ReleaseSpec, override: Path | None = None) -> Path:
    """The local target's folder: shared by every release of one app and environment."""
    if override is not None:
        return override
    if spec.target.type == "local" and spec.target.state_dir:
        return Path(spec.target.state_dir)
    return data_home() / "targets" / f"{spec.app}-{spec.environment}"


def _check_approvers(plan: Plan, approve: Sequence[tuple[str, str]]) -> None:
    roles = sorted({r for s in plan.steps if isinstance(s, WaitForApproval) for r in s.roles})
    for role, name in approve:
        if role not in roles:
            raise InvalidInput(
                f"--approve {role}:{name}: no step of this plan waits for a {role}; "
                f"roles that approve here: {', '.join(roles) or 'none (no approval steps)'}"
            )


def provider_for(
    spec: ReleaseSpec, options: RunOptions, state_dir: Path
) -> tuple[Provider, Callable[[list[str]], None], Callable[[], None]]:
    """Prometheus when a URL is given, else the built-in scraper on the target's versions."""
    if options.prometheus_url:
        from gatekeeper.targets.local.file_sd import write_file_sd
        from gates.prometheus import PrometheusProvider

        prom = PrometheusProvider(options.prometheus_url)
        if not prom.healthy():
            prom.close()
            raise GatekeeperError(f"prometheus at {options.prometheus_url} does not answer")
        sd_file = state_dir / "file_sd.json"

        def sync_sd(endpoints: list[str]) -> None:
            write_file_sd(sd_file, endpoints, {"release": spec.release_id})

        return prom, sync_sd, prom.close
    from gates.scraper import ScraperProvider

    scraper = ScraperProvider([], interval_s=options.scrape_interval_s)
    scraper.start()

    def sync(endpoints: list[str]) -> None:
        for e in endpoints:
            scraper.add_target(e if e.startswith("http") else f"http://{e}/metrics")

    return scraper, sync, scraper.close


def outcome_exit_code(phase: Phase) -> int:
    return int(for_phase(phase))
