"""The service assembled from its configuration: store, auth, metrics, notifications,
policy, lease, controller and the release facade; started and stopped as one."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.store.base import ServiceStore
from gatekeeper.store.factory import default_url
from gatekeeper.store.sql import SqlStore

from .. import audit
from ..alertmanager import AlertmanagerClient
from ..argo_settings import ArgoSettings
from ..auth import Authenticator, OidcSettings, OidcVerifier
from ..notify import Notifier
from ..service_metrics import ServiceMetrics
from .config import ArgoConfig, ServiceConfig
from .controller import Controller
from .driver import Drivers, RunFn, Runtime, default_run
from .leader import DatabaseLease, LeaderElector, Lease
from .releases import ReleaseService
from .scheduler import Scheduler
from .tokens_file import parse_tokens_file, store_tokens

log = logging.getLogger("gatekeeper.service")

AUDIT_CHECK_S = 900.0  # how often the audit chain is verified (gatekeeper_audit_chain_ok)


@dataclass
class Service:
    """Everything `gatekeeper serve` runs besides the HTTP server."""

    config: ServiceConfig
    store: ServiceStore
    metrics: ServiceMetrics
    notifier: Notifier
    releases: ReleaseService
    controller: Controller
    closers: list[object] = field(default_factory=list)
    audit_check_s: float = AUDIT_CHECK_S
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._auditor = threading.Thread(target=self._check_audit, name="audit", daemon=True)

    def start(self) -> None:
        self.controller.start()
        self._auditor.start()

    def stop(self) -> None:
        """Stop the controller (its releases stay where they are for the next leader), give
        the lease up, send what notifications are queued, close the store."""
        self._stop.set()
        self.controller.stop()
        if self._auditor.is_alive():
            self._auditor.join(10)
        for closer in self.closers:
            close = getattr(closer, "close", None)
            if close is not None:
                close()
        self.store.close()

    def warm(self) -> None:
        """Before the first request: the store's connections open, and the reads every
        request makes (a token, a release with its steps) run once, so their statements
        are compiled and cached: the first requests after a start or a failover answer as
        fast as the rest."""
        self.store.warm()
        self.store.find_token_by_hash("0" * 64)
        self.store.release_bundle("warm-up")
        self.store.lease_state(self.config.lease.name)

    def ready(self) -> str | None:
        """None when the service can answer (its store reads); else why not."""
        try:
            self.store.lease_state(self.config.lease.name)
        except GatekeeperError as e:
            return f"store: {e}"
        return None

    def _check_audit(self) -> None:
        while not self._stop.is_set():
            try:
                report = audit.verify(self.store)
                self.metrics.audit_chain(report.ok, checked_at=self.clock.now())
                if not report.ok and report.problem is not None:
                    log.error("audit log: %s", report.problem.message)
            except Exception as e:
                log.warning("audit log: cannot verify: %s", e)
            self._stop.wait(self.audit_check_s)


def argo_settings(config: ArgoConfig | None, environ: Mapping[str, str]) -> ArgoSettings | None:
    """argo-server's settings; the token from GATEKEEPER_ARGO_TOKEN, else ``token_file``."""
    if config is None:
        return None
    token = environ.get("GATEKEEPER_ARGO_TOKEN") or None
    if token is None and config.token_file:
        try:
            token = Path(config.token_file).read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"executor.argo.token_file {config.token_file}: {e}") from e
    verify: bool | str = config.ca_file or not config.insecure
    return ArgoSettings(
        server=config.server,
        namespace=config.namespace,
        token=token,
        verify=verify,
        image=config.image,
        service_account=config.service_account,
        env_secret=config.env_secret,
    )


def _lease(config: ServiceConfig, store: ServiceStore, clock: Clock) -> Lease:
    settings = config.lease
    if settings.kind == "database":
        return DatabaseLease(store, settings.name, settings.duration, clock)
    from .kube_lease import KubernetesLease

    return KubernetesLease.connect(
        store,
        settings.name,
        settings.namespace,
        settings.duration,
        kubeconfig=config.kubeconfig,
        clock=clock,
    )


def build_service(
    config: ServiceConfig,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    run: RunFn = default_run,
    holder: str | None = None,
) -> Service:
    """Open the store, store the bootstrap tokens, and build every part (nothing started).
    InvalidInput names the field of a bad setting; nothing is left open then."""
    env = os.environ if environ is None else environ
    argo = argo_settings(config.executor.argo, env)
    tokens = parse_tokens_file(Path(config.auth.tokens_file)) if config.auth.tokens_file else []
    url = config.store.url or default_url()
    store = SqlStore.open(url)
    closers: list[object] = []
    try:
        if config.auth.tokens_file:
            store_tokens(store, Path(config.auth.tokens_file), tokens, clock=clock)
        metrics = ServiceMetrics()
        oidc = None
        if config.auth.oidc is not None:
            o = config.auth.oidc
            oidc = OidcVerifier(
                OidcSettings(
                    issuer=o.issuer,
                    audience=o.audience,
                    jwks_url=o.jwks_url,
                    roles_claim=o.roles_claim,
                    name_claim=o.name_claim,
                    algorithms=o.algorithms,
                    leeway_s=o.leeway,
                )
            )
            closers.append(oidc)
        alerts = None
        if config.policy.alertmanager is not None:
            alerts = AlertmanagerClient.from_settings(config.policy.alertmanager)
            closers.append(alerts)
        notifier = Notifier.from_config(
            config.notifications, metrics=metrics, environ=env, clock=clock
        )
        closers.insert(0, notifier)  # closed first: it sends what is queued
        runtime = Runtime(
            prometheus_url=config.prometheus.url,
            db_url=url,
            kubeconfig=config.kubeconfig,
            argo=argo,
            public_url=config.server.public_url,
        )
        drivers = Drivers(runtime, metrics, notifier, run=run, clock=clock)
        lease = _lease(config, store, clock)
        closers.append(lease)
        elector = LeaderElector(
            lease, duration_s=config.lease.duration, renew_s=config.lease.renew, holder=holder
        )
        controller = Controller(
            store,
            elector,
            Scheduler(config.policy, alerts, clock),
            drivers,
            metrics,
            notifier,
            interval_s=config.controller.interval,
            clock=clock,
        )
        releases = ReleaseService(
            store,
            Authenticator(store, oidc, clock=clock),
            metrics,
            notifier,
            targets=tuple(config.controller.targets),
            executor=config.executor.kind,
            argo_configured=argo is not None,
            public_url=config.server.public_url,
            clock=clock,
        )
    except BaseException:
        for closer in closers:
            close = getattr(closer, "close", None)
            if close is not None:
                close()
        store.close()
        raise
    return Service(config, store, metrics, notifier, releases, controller, closers, clock=clock)
