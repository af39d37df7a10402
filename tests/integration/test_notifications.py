"""Notifications against real HTTP receivers on loopback: bodies, signatures, retries, isolation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.engine.notify import (
    EventKind,
    Notification,
    Notifier,
    PagerDutyReceiver,
    SlackReceiver,
    WebhookReceiver,
    parse_notify_config,
    verify_signature,
)
from gatekeeper.engine.service_metrics import ServiceMetrics
from tests.support.prom import free_port

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 20, 14, 2, tzinfo=UTC)
SECRET = "a-shared-secret"


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalReceiver(ThreadingHTTPServer):
    """Records every POST; answers ``statuses`` in order, then ``status``."""

    daemon_threads = False  # server_close joins the handlers: nothing outlives a test
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.cond = threading.Condition()
        self.statuses: list[int] = []
        self.status = 200
        self.delay_s = 0.0
        self.paused = threading.Event()  # set: each request waits until it is cleared
        self.resumed = threading.Event()
        self.ending = threading.Event()  # set at teardown: every wait ends at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Seen]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"receiver got {len(self.seen)} requests, wanted {count}")
            return list(self.seen)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that gave up (its timeout) before the answer: expected here


class _Handler(BaseHTTPRequestHandler):
    server: LocalReceiver

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        s = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with s.cond:
            s.seen.append(Seen(self.path, dict(self.headers.items()), body))
            status = s.statuses.pop(0) if s.statuses else s.status
            s.cond.notify_all()
        if s.paused.is_set():
            while not (s.resumed.is_set() or s.ending.is_set()):
                s.resumed.wait(0.05)
        if s.delay_s:
            s.ending.wait(s.delay_s)
        answer = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


MakeReceiver = Callable[[], LocalReceiver]


@pytest.fixture
def receivers() -> Iterator[MakeReceiver]:
    """Starts local receivers; at the end each is stopped and every thread joined."""
    made: list[tuple[LocalReceiver, threading.Thread]] = []

    def make() -> LocalReceiver:
        server = LocalReceiver()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        made.append((server, thread))
        return server

    yield make
    for server, thread in made:
        server.ending.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver(receivers: MakeReceiver) -> LocalReceiver:
    return receivers()


def note(kind: EventKind, *, version: str = "v2", reason: str = "", **extra: Any) -> Notification:
    return Notification(
        release_id=f"shop-production-{version}",
        app="shop",
        environment="production",
        version=version,
        kind=kind,
        at=AT,
        reason=reason,
        **extra,
    )


def sample(metrics: ServiceMetrics, receiver: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "gatekeeper_notifications_total", {"receiver": receiver, "result": result}
    )
    return value or 0.0


def hook(server: LocalReceiver, *, name: str = "hook") -> WebhookReceiver:
    return WebhookReceiver(name=name, url=server.url, secret=SECRET.encode())


# -- the receivers' bodies ------------------------------------------------------------------


def test_slack_gets_text_and_blocks_with_the_release_escaped(receiver: LocalReceiver):
    slack = SlackReceiver(
        name="slack", url=f"{receiver.url}/services/T0/B0/x", kinds=frozenset(EventKind)
    )
    reason = "abort: error ratio 6.1% > 5% over 2m (412 requests)"
    with Notifier([slack]) as notifier:
        notifier.notify(note(EventKind.ROLLED_BACK, reason=reason, url="https://gk.example/r/1"))
    (seen,) = receiver.wait_for(1)
    assert seen.path == "/services/T0/B0/x"
    assert seen.headers["Content-Type"] == "application/json"
    body = seen.json()
    assert body["text"].startswith(":rotating_light: shop/production v2 rolled back: abort:")
    assert "6.1% &gt; 5%" in body["text"] and "> 5%" not in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
    assert body["blocks"][0]["text"]["type"] == "mrkdwn"
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Release*\nshop-production-v2" in fields
    assert "*Event*\nrolled-back" in fields
    assert "<https://gk.example/r/1|the release>" in body["blocks"][2]["elements"][0]["text"]


def test_pagerduty_triggers_on_rollback_then_resolves_on_promotion_with_one_dedup_key(
    receiver: LocalReceiver,
):
    receiver.status = 202
    pd = PagerDutyReceiver(name="pagerduty", routing_key="R0UT1NGKEY", url=receiver.url)
    with Notifier([pd]) as notifier:
        notifier.notify(note(EventKind.STARTED))  # not a PagerDuty event: never sent
        notifier.notify(note(EventKind.ROLLED_BACK, reason="p0: candidate crash-looping"))
        notifier.notify(note(EventKind.PROMOTED))
    trigger, resolve = receiver.wait_for(2)
    assert len(receiver.seen) == 2
    assert trigger.path == resolve.path == "/v2/enqueue"
    t, r = trigger.json(), resolve.json()
    assert t["event_action"] == "trigger" and r["event_action"] == "resolve"
    assert t["dedup_key"] == r["dedup_key"] == "shop-production-v2"
    assert t["routing_key"] == r["routing_key"] == "R0UT1NGKEY"
    payload = t["payload"]
    assert payload["summary"] == "shop/production v2 rolled back: p0: candidate crash-looping"
    assert payload["source"] == "shop/production"
    assert payload["severity"] == "critical"
    assert payload["custom_details"]["version"] == "v2"
    assert "payload" not in r


def test_pagerduty_receiver_refuses_events_it_cannot_send():
    with pytest.raises(ValueError, match="events started are not sent to PagerDuty"):
        PagerDutyReceiver(name="pd", routing_key="k", kinds=frozenset({EventKind.STARTED}))


def test_webhook_signature_verifies_and_a_tampered_body_does_not(receiver: LocalReceiver):
    with Notifier([hook(receiver)]) as notifier:
        notifier.notify(note(EventKind.APPROVAL_NEEDED, step="approve-promote"))
    (seen,) = receiver.wait_for(1)
    ts = seen.headers["X-Gatekeeper-Timestamp"]
    sig = seen.headers["X-Gatekeeper-Signature"]
    assert sig.startswith("sha256=") and len(sig) == len("sha256=") + 64
    assert seen.headers["X-Gatekeeper-Event"] == "approval-needed"
    body = seen.json()
    assert body["kind"] == "approval-needed" and body["step"] == "approve-promote"
    assert body["release_id"] == "shop-production-v2"
    assert body["id"] == seen.headers["X-Gatekeeper-Delivery"]

    assert verify_signature(SECRET, seen.body, ts, sig)
    tampered = seen.body.replace(b"approve-promote", b"approve-anything")
    assert not verify_signature(SECRET, tampered, ts, sig)
    assert not verify_signature("another-secret", seen.body, ts, sig)
    assert not verify_signature(SECRET, seen.body, str(int(ts) + 1), sig)
    # A replay long after: the signature is right, the timestamp too old.
    assert not verify_signature(SECRET, seen.body, ts, sig, now=int(ts) + 3600)


# -- retries and failures -------------------------------------------------------------------


def test_a_failing_receiver_is_retried_and_delivered(receiver: LocalReceiver):
    receiver.statuses = [500, 500]
    metrics = ServiceMetrics()
    with Notifier([hook(receiver)], metrics=metrics, attempts=3, backoff_s=0.01) as notifier:
        notifier.notify(note(EventKind.ROLLED_BACK))
    seen = receiver.wait_for(3)
    assert len(seen) == 3
    assert len({s.headers["X-Gatekeeper-Delivery"] for s in seen}) == 1  # one event, 3 tries
    assert sample(metrics, "hook", "sent") == 1
    assert sample(metrics, "hook", "failed") == 0


def test_a_receiver_failing_every_attempt_is_counted_not_raised(receiver: LocalReceiver):
    receiver.status = 503
    metrics = ServiceMetrics()
    with Notifier([hook(receiver)], metrics=metrics, attempts=3, backoff_s=0.01) as notifier:
        notifier.notify(note(EventKind.FAILED))
    assert len(receiver.wait_for(3)) == 3
    assert sample(metrics, "hook", "failed") == 1
    assert sample(metrics, "hook", "sent") == 0


def test_a_4xx_is_not_retried(receiver: LocalReceiver):
    receiver.status = 400
    metrics = ServiceMetrics()
    with Notifier([hook(receiver)], metrics=metrics, attempts=3, backoff_s=0.01) as notifier:
        notifier.notify(note(EventKind.FAILED))
    assert len(receiver.wait_for(1)) == 1
    assert sample(metrics, "hook", "failed") == 1


def test_a_receiver_that_is_down_is_counted_not_raised():
    metrics = ServiceMetrics()
    dead = WebhookReceiver(name="dead", url=f"http://127.0.0.1:{free_port()}", secret=b"s")
    with Notifier([dead], metrics=metrics, attempts=2, backoff_s=0.01) as notifier:
        notifier.notify(note(EventKind.ROLLED_BACK))
    assert sample(metrics, "dead", "failed") == 1


# -- a slow receiver never delays the caller or another receiver ------------------------------


def test_a_hanging_receiver_does_not_delay_notify_or_the_other_receivers(receivers: MakeReceiver):
    hanging = receivers()
    hanging.delay_s = 5.0  # far longer than the notifier's timeout
    fast = receivers()
    metrics = ServiceMetrics()
    notifier = Notifier(
        [hook(hanging), SlackReceiver(name="slack", url=fast.url, kinds=frozenset(EventKind))],
        metrics=metrics,
        attempts=1,
        timeout_s=1.0,
    )
    try:
        notifier.notify(note(EventKind.ROLLED_BACK))
        hanging.wait_for(1)  # the hanging receiver holds a request now
        began = time.monotonic()
        notifier.notify(note(EventKind.FAILED, version="v3"))
        took = time.monotonic() - began
        assert took < 0.5, f"notify() took {took:.3f}s while a receiver hung"
        # The fast receiver has both while the hanging one still holds its first.
        assert len(fast.wait_for(2, timeout=3.0)) == 2
        assert len(hanging.seen) == 1
    finally:
        assert notifier.close(timeout=10.0)
    assert sample(metrics, "hook", "failed") == 2  # each attempt timed out after 1s
    assert sample(metrics, "slack", "sent") == 2


def test_a_full_queue_drops_the_oldest_and_counts_it(receiver: LocalReceiver):
    receiver.paused.set()  # the first request is held until the test lets it go
    metrics = ServiceMetrics()
    notifier = Notifier([hook(receiver)], metrics=metrics, queue_size=2, timeout_s=10.0)
    try:
        first, *rest = [note(EventKind.STEP_COMPLETED, step=f"shift-{i}") for i in range(5)]
        notifier.notify(first)
        receiver.wait_for(1)  # taken off the queue and being sent
        for n in rest:
            notifier.notify(n)
        assert notifier.dropped("hook") == 2
        assert sample(metrics, "hook", "dropped") == 2
        receiver.resumed.set()
    finally:
        assert notifier.close(timeout=10.0)
    delivered = [s.json()["step"] for s in receiver.wait_for(3)]
    assert delivered == ["shift-0", "shift-3", "shift-4"]  # shift-1 and shift-2 were oldest
    assert sample(metrics, "hook", "sent") == 3


def test_close_gives_up_on_a_hanging_receiver_within_its_timeouts(receiver: LocalReceiver):
    receiver.delay_s = 5.0
    metrics = ServiceMetrics()
    notifier = Notifier([hook(receiver)], metrics=metrics, attempts=1, timeout_s=1.0)
    for i in range(3):
        notifier.notify(note(EventKind.STEP_COMPLETED, step=f"shift-{i}"))
    receiver.wait_for(1)
    began = time.monotonic()
    assert not notifier.close(timeout=0.2)  # not drained in time: the rest is dropped
    assert time.monotonic() - began < 3.0
    assert sample(metrics, "hook", "dropped") == 2
    assert notifier.dropped() == 2


# -- configuration: receivers and their events -----------------------------------------------


def test_each_receiver_gets_only_the_events_its_config_names(
    receivers: MakeReceiver, tmp_path: Path
):
    pages = receivers()
    log = receivers()
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text(SECRET + "\n")
    config = parse_notify_config(
        {
            "attempts": 2,
            "timeout": "2s",
            "receivers": [
                {"type": "slack", "url_from": {"env": "SLACK_URL"}, "events": ["rolled-back"]},
                {"type": "webhook", "url": log.url, "secret": {"file": str(secret_file)}},
            ],
        }
    )
    with Notifier.from_config(config, environ={"SLACK_URL": pages.url}) as notifier:
        assert notifier.receivers == ["slack", "webhook"]
        for kind in (EventKind.STARTED, EventKind.ROLLED_BACK, EventKind.ABORTED):
            notifier.notify(note(kind))
    assert [s.json()["text"].split()[-2:] for s in pages.wait_for(1)] == [["rolled", "back"]]
    assert len(pages.seen) == 1
    logged = log.wait_for(3)
    assert [s.json()["kind"] for s in logged] == ["started", "rolled-back", "aborted"]
    s = logged[0]
    assert verify_signature(
        SECRET, s.body, s.headers["X-Gatekeeper-Timestamp"], s.headers["X-Gatekeeper-Signature"]
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"receivers": [{"type": "webhook", "url": "https://h.example", "secret": "inline"}]},
            "receivers.0.secret: a secret is not written in the configuration",
        ),
        (
            {
                "receivers": [
                    {"type": "pagerduty", "routing_key": {"env": "K"}, "events": ["aborted"]}
                ]
            },
            "receivers.0.events: aborted: PagerDuty takes only failed, promoted, rolled-back",
        ),
        (
            {"receivers": [{"type": "slack", "url": "https://h.example", "events": ["rollback"]}]},
            "receivers.0.events.0: 'rollback' is not an event: one of submitted",
        ),
        (
            {"receivers": [{"type": "slack", "url": "ftp://h.example"}]},
            "receivers.0.url: 'ftp://h.example' is not an http or https URL",
        ),
        (
            {
                "receivers": [
                    {"type": "slack", "url": "https://a.example"},
                    {"type": "slack", "url": "https://b.example"},
                ]
            },
            "receivers 0 and 1 are both named 'slack'",
        ),
        ({"queue_size": 0}, "queue_size: Input should be greater than or equal to 1"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], message: str):
    with pytest.raises(InvalidInput, match="^notifications: ") as e:
        parse_notify_config(config)
    assert message in str(e.value)


def test_a_secret_that_cannot_be_read_names_the_field_and_where(tmp_path: Path):
    config = parse_notify_config(
        {
            "receivers": [
                {"type": "pagerduty", "routing_key": {"env": "PD_KEY"}},
                {
                    "type": "webhook",
                    "url": "https://h.example",
                    "secret": {"file": str(tmp_path / "missing")},
                },
            ]
        }
    )
    with pytest.raises(
        InvalidInput, match=r"receivers.0.routing_key: environment variable PD_KEY is not set"
    ):
        Notifier.from_config(config, environ={})
    with pytest.raises(InvalidInput, match=r"receivers.1.secret: cannot read .*missing"):
        Notifier.from_config(config, environ={"PD_KEY": "k"})


def test_a_notification_of_a_spec_and_the_event_of_each_ending():
    spec = parse_release(
        {
            "app": "shop",
            "environment": "staging",
            "version": "v2",
            "command": "serve --port {port}",
            "stable": {"version": "v1", "command": "serve --port {port}"},
            "strategy": {"type": "canary"},
        }
    )
    n = Notification.of(spec, EventKind.APPROVED, at=AT, step="approve-promote", by="alice")
    assert (n.release_id, n.app, n.environment, n.version) == (
        "shop-staging-v2",
        "shop",
        "staging",
        "v2",
    )
    assert n.headline() == "shop/staging v2 approved (approve-promote) by alice"
    assert EventKind.ending(Phase.ROLLED_BACK) is EventKind.ROLLED_BACK
    assert EventKind.ending(Phase.PROMOTED) is EventKind.PROMOTED
    assert EventKind.ending(Phase.RUNNING) is None
    with pytest.raises(ValueError, match="timezone"):
        Notification.of(spec, EventKind.STARTED, at=datetime(2026, 11, 20, 14, 0))
