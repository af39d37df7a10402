"""PromQL for the resource gates: requests, CPU, memory and pools per pod of each version.

Process and container series carry no app or version label, so each is joined with the
version's own request series on what they share (gates/profiles.py, ``Resources``):
the scrape target for process metrics, the namespace and pod for cAdvisor's::

    sum by (app, version, instance) (
      (increase(process_cpu_seconds_total{}[30s]))
      * on (job, instance) group_left (app, version)
        group by (job, instance, app, version) (http_requests_total{app="shop", ...})
    )

A version whose request series do not exist yet (a counter created at the first
request) has no pods here: there is nothing to judge before its traffic anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatekeeper.domain.durations import promql_duration
from gatekeeper.domain.errors import ProviderError

from .profiles import PoolMapping, Profile, Resources
from .promql import escape_string, matcher, regex_matcher, selector
from .provider import Subject, Usage


def own_requests(profile: Profile, subjects: Sequence[Subject]) -> str:
    """The versions' request series that their pods report themselves."""
    if profile.own_series is None:
        raise ProviderError(
            f"profile {profile.name}: its request counter {profile.requests_metric} is a "
            "proxy's, not the pods': the resource gates need a profile whose requests the "
            "app's pods report (http, istio)"
        )
    own = "".join(f",{matcher(k, v)}" for k, v in profile.own_series)
    return f"{profile.requests_metric}{{{selector(profile, subjects)}{own}}}"


def targets(profile: Profile, resources: Resources, subjects: Sequence[Subject]) -> str:
    """One series per pod reporting a version's requests, with the version's identity."""
    by = ", ".join((*resources.join_labels, *profile.identity_labels))
    return f"group by ({by}) ({own_requests(profile, subjects)})"


def _join(profile: Profile, resources: Resources, subjects: Sequence[Subject], inner: str) -> str:
    """``inner`` (a vector of a pod's series) with the version's identity joined on."""
    on = ", ".join(resources.join_labels)
    ids = ", ".join(profile.identity_labels)
    return f"({inner}) * on ({on}) group_left ({ids}) {targets(profile, resources, subjects)}"


def _per_pod(profile: Profile, resources: Resources, *extra: str) -> str:
    return ", ".join((*profile.identity_labels, resources.pod_label, *extra))


def _matchers(resources: Resources, subjects: Sequence[Subject], *extra: str) -> str:
    """Matchers for a pod's series: in the versions' namespaces (cAdvisor), and ``extra``."""
    parts = []
    if "namespace" in resources.join_labels:
        parts.append(regex_matcher("namespace", {s.namespace for s in subjects}))
    parts.extend(e for e in extra if e)
    return ",".join(parts)


def requests_by_pod(
    profile: Profile, resources: Resources, subjects: Sequence[Subject], window_s: float
) -> str:
    return (
        f"sum by ({_per_pod(profile, resources)}) (increase("
        f"{own_requests(profile, subjects)}[{promql_duration(window_s)}]))"
    )


def usage(
    profile: Profile,
    resources: Resources,
    what: Usage,
    subjects: Sequence[Subject],
    window_s: float,
) -> str:
    """CPU seconds used (increase) or memory held (mean) per pod over the window."""
    metric = resources.cpu_metric if what is Usage.CPU_SECONDS else resources.memory_metric
    fn = "increase" if what is Usage.CPU_SECONDS else "avg_over_time"
    chosen = _matchers(resources, subjects, resources.container_matchers)
    inner = f"{fn}({metric}{{{chosen}}}[{promql_duration(window_s)}])"
    return f"sum by ({_per_pod(profile, resources)}) ({_join(profile, resources, subjects, inner)})"


def pool_names(
    profile: Profile,
    resources: Resources,
    mappings: Sequence[PoolMapping],
    subjects: Sequence[Subject],
) -> str:
    """Which of the mappings' metrics the versions' pods export (``count by (__name__)``)."""
    names = sorted({n for m in mappings for n in (m.in_use_metric, m.max_metric)})
    chosen = _matchers(resources, subjects, f'__name__=~"{escape_string("|".join(names))}"')
    on = ", ".join(resources.join_labels)
    return (
        f"count by (__name__) ({{{chosen}}} and on ({on}) {targets(profile, resources, subjects)})"
    )


def pool_in_use(
    profile: Profile,
    resources: Resources,
    mapping: PoolMapping,
    subjects: Sequence[Subject],
    window_s: float,
) -> str:
    return _pool(profile, resources, mapping, subjects, window_s, maximum=False)


def pool_max(
    profile: Profile,
    resources: Resources,
    mapping: PoolMapping,
    subjects: Sequence[Subject],
    window_s: float,
) -> str:
    return _pool(profile, resources, mapping, subjects, window_s, maximum=True)


def _pool(
    profile: Profile,
    resources: Resources,
    mapping: PoolMapping,
    subjects: Sequence[Subject],
    window_s: float,
    *,
    maximum: bool,
) -> str:
    metric = mapping.max_metric if maximum else mapping.in_use_metric
    key = mapping.max_key if maximum else mapping.in_use_key
    extra = [] if maximum else [matcher(k, v) for k, v in mapping.in_use_matchers]
    fn = "max_over_time" if maximum else "avg_over_time"
    chosen = _matchers(resources, subjects, *extra)
    inner = f"{fn}({metric}{{{chosen}}}[{promql_duration(window_s)}])"
    agg = "max" if maximum else "sum"
    return (
        f"{agg} by ({_per_pod(profile, resources, key)}) "
        f"({_join(profile, resources, subjects, inner)})"
    )
