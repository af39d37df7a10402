"""The service's own metrics: names, labels, buckets and the series a finished release leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.engine.service_metrics import (
    ROLLBACK_BUCKETS,
    ApprovalOutcome,
    RollbackReason,
    ServiceMetrics,
    StepResult,
)

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def samples(m: ServiceMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by name and labels (parsed back from the text)."""
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: ServiceMetrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, frozenset(labels.items())))


def gate(name: str, verdict: Verdict, v: float | None, threshold: float | None) -> GateResult:
    return GateResult(name, verdict, f"{name}: {verdict}", T0, value=v, threshold=threshold)


def test_exposition_has_every_metric_with_its_labels_after_the_calls():
    m = ServiceMetrics()
    m.release_at("shop", "production", "analyze", since=T0)
    m.gate_result("shop", "production", gate("abort", Verdict.FAIL, 0.061, 0.05))
    m.rollback(
        "shop",
        "production",
        RollbackReason.GATE,
        detected_at=T0,
        stable_at=T0 + timedelta(seconds=3),
    )
    m.step_finished("analyze", StepResult.FAILED, 42.0)
    m.release_finished("shop", "production", Phase.ROLLED_BACK)
    m.approval_waiting("cart", "staging", "cart-staging-v7", "approve-promote", since=T0)
    m.queue_length("cart", "staging", 2)
    m.leader(True)
    m.metrics_provider_error("prometheus")
    m.audit_chain(True, checked_at=T0)
    m.notification("slack", "sent")

    text = m.exposition().decode()
    for line in [
        'gatekeeper_releases_total{app="shop",environment="production",outcome="rolled_back"} 1.0',
        'gatekeeper_rollbacks_total{app="shop",environment="production",reason_kind="gate"} 1.0',
        'gatekeeper_time_to_rollback_seconds_bucket{le="5.0"} 1.0',
        'gatekeeper_time_to_rollback_seconds_bucket{le="2.0"} 0.0',
        "gatekeeper_time_to_rollback_seconds_sum 3.0",
        'gatekeeper_steps_total{kind="analyze",result="failed"} 1.0',
        'gatekeeper_step_duration_seconds_count{kind="analyze"} 1.0',
        'gatekeeper_gate_verdicts_total{gate="abort",verdict="fail"} 1.0',
        'gatekeeper_approvals_waiting{app="cart",environment="staging"} 1.0',
        "gatekeeper_approval_oldest_waiting_timestamp_seconds"
        f'{{app="cart",environment="staging"}} {T0.timestamp():.7e}',
        'gatekeeper_queue_length{app="cart",environment="staging"} 2.0',
        "gatekeeper_leader 1.0",
        'gatekeeper_metrics_provider_errors_total{provider="prometheus"} 1.0',
        "gatekeeper_audit_chain_ok 1.0",
        'gatekeeper_notifications_total{receiver="slack",result="sent"} 1.0',
    ]:
        assert line in text, f"{line!r} not in the exposition"
    for name in (
        "gatekeeper_releases_in_progress",
        "gatekeeper_gate_value",
        "gatekeeper_gate_threshold",
        "gatekeeper_approval_wait_seconds",
        "gatekeeper_audit_chain_last_check_timestamp_seconds",
        "gatekeeper_release_step_started_timestamp_seconds",
    ):
        assert f"# TYPE {name} " in text, f"{name} is not declared"
    assert "cart-staging-v7" not in text and "shop-production" not in text  # no release ids


def test_the_registry_is_its_own_not_the_global_one():
    m = ServiceMetrics()
    m.leader(True)
    assert REGISTRY.get_sample_value("gatekeeper_leader") is None
    assert ServiceMetrics().registry is not m.registry  # two services never share series


def test_rollback_buckets_span_a_second_to_an_hour():
    m = ServiceMetrics()
    for seconds in (0.4, 7.0, 95.0, 3000.0, 7200.0):
        m.rollback(
            "shop",
            "production",
            "p0",
            detected_at=T0,
            stable_at=T0 + timedelta(seconds=seconds),
        )
    assert ROLLBACK_BUCKETS[0] == 1.0 and ROLLBACK_BUCKETS[-1] == 3600.0
    assert list(ROLLBACK_BUCKETS) == sorted(ROLLBACK_BUCKETS)
    cumulative = [
        value(m, "gatekeeper_time_to_rollback_seconds_bucket", le=le)
        for le in ("1.0", "10.0", "120.0", "3600.0", "+Inf")
    ]
    assert cumulative == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_rollback_detected_after_stable_counts_as_zero_not_negative():
    m = ServiceMetrics()
    m.rollback("shop", "production", "gate", detected_at=T0, stable_at=T0 - timedelta(seconds=1))
    assert value(m, "gatekeeper_time_to_rollback_seconds_sum") == 0.0


def test_in_progress_follows_the_step_and_a_finished_release_leaves_no_series():
    m = ServiceMetrics()
    m.release_at("shop", "production", "shift", since=T0)
    m.release_at("shop", "production", "holding", since=T0 + timedelta(minutes=5))
    m.gate_result("shop", "production", gate("latency", Verdict.WARN, 0.61, 0.5))
    s = samples(m)
    holding = frozenset({("app", "shop"), ("environment", "production"), ("step", "holding")})
    shift = frozenset({("app", "shop"), ("environment", "production"), ("step", "shift")})
    assert s[("gatekeeper_releases_in_progress", holding)] == 1.0
    assert ("gatekeeper_releases_in_progress", shift) not in s
    started = s[("gatekeeper_release_step_started_timestamp_seconds", holding)]
    assert started == (T0 + timedelta(minutes=5)).timestamp()
    assert value(m, "gatekeeper_gate_value", app="shop", environment="production", gate="latency")
    assert (
        value(m, "gatekeeper_gate_threshold", app="shop", environment="production", gate="latency")
        == 0.5
    )

    m.release_finished("shop", "production", "promoted")
    after = samples(m)
    for name in (
        "gatekeeper_releases_in_progress",
        "gatekeeper_release_step_started_timestamp_seconds",
        "gatekeeper_gate_value",
        "gatekeeper_gate_threshold",
    ):
        assert not [k for k in after if k[0] == name], f"{name} still has series"


def test_a_gate_without_a_value_has_no_value_series():
    m = ServiceMetrics()
    m.gate_result("shop", "production", gate("errors", Verdict.PASS, 0.01, 0.02))
    m.gate_result("shop", "production", gate("errors", Verdict.INCONCLUSIVE, None, 0.02))
    assert (
        value(m, "gatekeeper_gate_value", app="shop", environment="production", gate="errors")
        is None
    )
    assert value(m, "gatekeeper_gate_verdicts_total", gate="errors", verdict="inconclusive") == 1.0


def test_approvals_waiting_counts_and_the_oldest_wait_and_observes_each_wait():
    m = ServiceMetrics()
    m.approval_waiting("shop", "production", "shop-production-v2", "approve-a", since=T0)
    m.approval_waiting(
        "shop", "production", "shop-production-v2", "approve-b", since=T0 + timedelta(minutes=1)
    )
    labels = {"app": "shop", "environment": "production"}
    assert value(m, "gatekeeper_approvals_waiting", **labels) == 2.0
    oldest = "gatekeeper_approval_oldest_waiting_timestamp_seconds"
    assert value(m, oldest, **labels) == T0.timestamp()

    m.approval_settled(
        "shop",
        "production",
        "shop-production-v2",
        "approve-a",
        ApprovalOutcome.APPROVED,
        at=T0 + timedelta(minutes=20),
    )
    assert value(m, "gatekeeper_approvals_waiting", **labels) == 1.0
    assert value(m, oldest, **labels) == (T0 + timedelta(minutes=1)).timestamp()
    assert value(m, "gatekeeper_approval_wait_seconds_sum", outcome="approved") == 1200.0
    assert value(m, "gatekeeper_approval_wait_seconds_bucket", outcome="approved", le="900.0") == 0
    assert value(m, "gatekeeper_approval_wait_seconds_bucket", outcome="approved", le="1800.0") == 1

    m.release_finished("shop", "production", Phase.ABORTED)  # nothing waits any more
    assert value(m, "gatekeeper_approvals_waiting", **labels) == 0.0
    assert value(m, oldest, **labels) is None


def test_leader_and_audit_chain_flip_between_one_and_zero():
    m = ServiceMetrics()
    assert value(m, "gatekeeper_leader") == 0.0  # not the leader until elected
    m.leader(True)
    m.leader(False)
    assert value(m, "gatekeeper_leader") == 0.0
    m.audit_chain(False, checked_at=T0)
    assert value(m, "gatekeeper_audit_chain_ok") == 0.0
    assert value(m, "gatekeeper_audit_chain_last_check_timestamp_seconds") == T0.timestamp()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.release_finished("shop", "production", "running"),
            "release of shop in production: outcome 'running' is not one of promoted, "
            "rolled_back, aborted, failed",
        ),
        (
            lambda m: m.rollback("shop", "production", "timeout", detected_at=T0, stable_at=T0),
            "rollback of shop in production: reason_kind 'timeout' is not one of gate, p0",
        ),
        (lambda m: m.step_finished("shift", "ok", 1.0), "step shift: result 'ok' is not one of"),
        (lambda m: m.step_finished("shift", "completed", -1.0), "duration -1.0s is negative"),
        (lambda m: m.queue_length("shop", "production", -1), "length -1 is negative"),
        (
            lambda m: m.notification("slack", "lost"),
            "notification to slack: result 'lost' is not one of",
        ),
    ],
)
def test_a_value_outside_a_bounded_label_is_refused_by_name(call, message: str):
    m = ServiceMetrics()
    with pytest.raises(ValueError) as e:
        call(m)
    assert message in str(e.value)


def test_a_queued_release_that_ends_unstarted_leaves_the_running_ones_series() -> None:
    m = ServiceMetrics()
    m.release_at("shop", "prod", "analyze", since=T0)
    m.release_finished("shop", "prod", Phase.ABORTED, started=False)
    text = m.exposition().decode()
    assert (
        'gatekeeper_releases_in_progress{app="shop",environment="prod",step="analyze"} 1.0' in text
    )
    assert 'gatekeeper_releases_total{app="shop",environment="prod",outcome="aborted"} 1.0' in text


def test_a_gate_whose_queries_kept_failing_counts_a_metrics_provider_error(
    tmp_path: Path,
) -> None:
    from gatekeeper.domain.release import parse_release
    from gatekeeper.engine.notify import Notifier
    from gatekeeper.engine.service.listener import ServiceListener
    from gatekeeper.store.factory import open_store
    from gates.spec import default_gates
    from gates.verdict import no_data, provider_error

    spec = parse_release(
        {
            "app": "shop",
            "environment": "prod",
            "version": "v2",
            "command": "svc --port {port}",
            "stable": {"version": "v1", "command": "svc --port {port}"},
            "strategy": {"type": "canary"},
        }
    )
    m = ServiceMetrics()
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    notifier = Notifier([])
    try:
        listener = ServiceListener(
            spec,
            store,  # type: ignore[arg-type]  # the SQL store serves the service too
            m,
            notifier,
            term_detail={},
            provider="prometheus",
        )
        abort, latency = default_gates().gates[0], default_gates().gates[2]
        # The result the evaluator makes of a query that kept failing (its reason starts
        # with the gate's name), and one of a gate that merely has no data: not an error.
        failing = provider_error(abort, T0, "prometheus at http://prom:9090: ConnectionError")
        listener.gates([failing, no_data(latency, T0, latency.window)])
    finally:
        notifier.close()
        store.close()
    text = m.exposition().decode()
    assert 'gatekeeper_metrics_provider_errors_total{provider="prometheus"} 1.0' in text
