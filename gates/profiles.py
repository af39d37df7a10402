"""Metric profiles: where the gates find requests, response codes and latency buckets.

Each profile maps the same gates onto one family of metric names. A profile's
selector templates say which series belong to one version of one app.
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
        ),
        Profile(
            name="nginx",
            requests_metric="nginx_ingress_controller_requests",
            code_label="status",
            duration_bucket_metric="nginx_ingress_controller_request_duration_seconds_bucket",
            duration_unit_s=1.0,
            selector=(("namespace", "$namespace"), ("service", "$workload")),
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
