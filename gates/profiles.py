"""Metric profiles: where the gates find requests, response codes and latency buckets, and
where the resource gates find CPU, memory and database pools.

Each profile maps the same gates onto one family of metric names. A profile's
selector templates say which series belong to one version of one app. A resource
source says where a version's pods' CPU and memory come from and how its pods are
told apart; a pool mapping names one exporter's pool metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.domain.errors import InvalidInput


@dataclass(frozen=True)
class Profile:
    name: str
    requests_metric: str  # a counter of requests
    code_label: str  # the response code label; 5xx counts as an error
    duration_bucket_metric: str  # histogram buckets (with `le`)
    duration_unit_s: float  # 1.0 for seconds, 0.001 for milliseconds
    selector: tuple[tuple[str, str], ...]  # (label, template over app/namespace/version/workload)
    # The request series a version's pods report themselves (the resource gates join on
    # them); None: the counter is a proxy's, not the pods' (ingress, front proxy).
    own_series: tuple[tuple[str, str], ...] | None = ()

    @property
    def identity_labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.selector)

    def selector_values(self, app: str, namespace: str, version: str) -> dict[str, str]:
        variables = {
            "app": app,
            "namespace": namespace,
            "version": version,
            "workload": f"{app}-{version}",
        }
        return {label: _fill(tpl, variables) for label, tpl in self.selector}


def _fill(template: str, variables: dict[str, str]) -> str:
    out = template
    for key in sorted(variables, key=len, reverse=True):
        out = out.replace("$" + key, variables[key])
    return out


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="http",
            requests_metric="http_requests_total",
            code_label="code",
            duration_bucket_metric="http_request_duration_seconds_bucket",
            duration_unit_s=1.0,
            selector=(("app", "$app"), ("version", "$version")),
        ),
        Profile(
            name="istio",
            requests_metric="istio_requests_total",
            code_label="response_code",
            duration_bucket_metric="istio_request_duration_milliseconds_bucket",
            duration_unit_s=0.001,
            selector=(
                ("destination_workload_namespace", "$namespace"),
                ("destination_workload", "$workload"),
            ),
            own_series=(("reporter", "destination"),),
        ),
        Profile(
            name="nginx",
            requests_metric="nginx_ingress_controller_requests",
            code_label="status",
            duration_bucket_metric="nginx_ingress_controller_request_duration_seconds_bucket",
            duration_unit_s=1.0,
            selector=(("namespace", "$namespace"), ("service", "$workload")),
            own_series=None,
        ),
        Profile(
            name="envoy",
            requests_metric="envoy_cluster_upstream_rq",
            code_label="envoy_response_code",
            duration_bucket_metric="envoy_cluster_upstream_rq_time_bucket",
            duration_unit_s=0.001,
            selector=(
                ("kubernetes_namespace", "$namespace"),
                ("envoy_cluster_name", "$workload"),
            ),
            own_series=None,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidInput(
            f"profile {name!r} is not known; allowed: {', '.join(sorted(PROFILES))}"
        ) from None


def is_error_code(code: str) -> bool:
    """A 5xx response is the server's fault; 4xx are the client's and do not count."""
    return len(code) == 3 and code.startswith("5") and code.isdigit()


# -- resources: CPU and memory per pod ------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """Where CPU and memory of a version's pods come from, and how a version's series are found.

    Process and container metrics carry no app or version label of their own, so every
    resource figure is joined, on ``join_labels``, with the profile's request counter of
    the version (which has its identity), and told apart per pod by ``pod_label``:

    ``process``: the app's own /metrics (every Prometheus client library exports the
    process collector's ``process_cpu_seconds_total`` and
    ``process_resident_memory_bytes``), joined on the scrape target (``job``,
    ``instance``): the app must export its request counter itself (the ``http``
    profile). A pod is an ``instance``.

    ``cadvisor``: the kubelet's cAdvisor (``container_cpu_usage_seconds_total``,
    ``container_memory_working_set_bytes``, every container of the pod but its sandbox),
    joined on ``namespace`` and ``pod`` with the request series scraped from the same pod
    (Kubernetes service discovery attaches both labels; the ``http`` profile, or ``istio``
    whose destination-side series the pod's sidecar reports). A pod is a ``pod``. The
    database pool metrics are joined the same way, so an exporter beside the app in its
    pod (a pgbouncer sidecar) counts as the app's.
    """

    name: str
    cpu_metric: str  # a counter of CPU seconds
    memory_metric: str  # a gauge of bytes
    pod_label: str  # what tells a version's pods apart
    join_labels: tuple[str, ...]  # what a pod's series share with its request series
    container_matchers: str = ""  # extra matchers for the CPU and memory series


RESOURCES: dict[str, Resources] = {
    r.name: r
    for r in (
        Resources(
            name="process",
            cpu_metric="process_cpu_seconds_total",
            memory_metric="process_resident_memory_bytes",
            pod_label="instance",
            join_labels=("job", "instance"),
        ),
        Resources(
            name="cadvisor",
            cpu_metric="container_cpu_usage_seconds_total",
            memory_metric="container_memory_working_set_bytes",
            pod_label="pod",
            join_labels=("namespace", "pod"),
            container_matchers='container!="",container!="POD"',
        ),
    )
}


def get_resources(name: str) -> Resources:
    try:
        return RESOURCES[name]
    except KeyError:
        raise InvalidInput(
            f"resources {name!r} is not known; allowed: {', '.join(RESOURCES)}"
        ) from None


# -- database pools -------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolMapping:
    """One exporter's pool metrics: connections in use and the pool's maximum, both gauges.

    ``in_use_matchers`` narrows the in-use metric (OpenTelemetry counts every state in
    one metric). A pool is told apart by ``in_use_key`` on the in-use series and by
    ``max_key`` on the maximum's (pgbouncer names its pools ``database`` in one family
    and ``name`` in the other).
    """

    name: str
    source: str  # who exports it, for the README and for reasons
    in_use_metric: str
    max_metric: str
    in_use_key: str
    max_key: str
    in_use_matchers: tuple[tuple[str, str], ...] = ()


POOL_MAPPINGS: dict[str, PoolMapping] = {
    m.name: m
    for m in (
        PoolMapping(
            name="hikaricp",
            source="HikariCP through Micrometer (Spring Boot Actuator)",
            in_use_metric="hikaricp_connections_active",
            max_metric="hikaricp_connections_max",
            in_use_key="pool",
            max_key="pool",
        ),
        PoolMapping(
            name="hikaricp-prometheus",
            source="HikariCP's own PrometheusMetricsTrackerFactory",
            in_use_metric="hikaricp_active_connections",
            max_metric="hikaricp_max_connections",
            in_use_key="pool",
            max_key="pool",
        ),
        PoolMapping(
            name="otel",
            source="OpenTelemetry semantic conventions up to 1.25 (db.client.connections.*): "
            "the Java agent's JDBC pools, SQLAlchemy's instrumentation",
            in_use_metric="db_client_connections_usage",
            max_metric="db_client_connections_max",
            in_use_key="pool_name",
            max_key="pool_name",
            in_use_matchers=(("state", "used"),),
        ),
        PoolMapping(
            name="otel-1.26",
            source="OpenTelemetry semantic conventions from 1.26 (db.client.connection.*)",
            in_use_metric="db_client_connection_count",
            max_metric="db_client_connection_max",
            in_use_key="db_client_connection_pool_name",
            max_key="db_client_connection_pool_name",
            in_use_matchers=(("db_client_connection_state", "used"),),
        ),
        PoolMapping(
            name="go-sql",
            source="Go database/sql through dlmiddlecote/sqlstats",
            in_use_metric="go_sql_stats_connections_in_use",
            max_metric="go_sql_stats_connections_max_open",
            in_use_key="db_name",
            max_key="db_name",
        ),
        PoolMapping(
            name="pgbouncer",
            source="prometheus-community/pgbouncer_exporter beside the app in its pod",
            in_use_metric="pgbouncer_pools_server_active_connections",
            max_metric="pgbouncer_databases_pool_size",
            in_use_key="database",
            max_key="name",
        ),
    )
}


def pool_mappings(name: str | None) -> tuple[PoolMapping, ...]:
    """The mapping a gate names, or every known one (None)."""
    if name is None:
        return tuple(POOL_MAPPINGS.values())
    try:
        return (POOL_MAPPINGS[name],)
    except KeyError:
        raise InvalidInput(
            f"pool {name!r} is not known; allowed: {', '.join(POOL_MAPPINGS)}"
        ) from None
