"""Sends notifications in the background, so a slow or failing receiver never delays a release.

Each receiver has its own bounded queue and its own sending thread: a receiver that hangs
delays only its own notifications, not another receiver's, and never the caller. When a
queue is full the oldest notification in it is dropped and counted. Each send is retried
with tenacity (jittered exponential backoff, a few attempts, a timeout on each); a
notification that still fails is logged and counted, never raised to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType

import httpx
import tenacity

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock

from ..service_metrics import NotificationResult, ServiceMetrics
from .base import USER_AGENT, Receiver, where
from .config import NotifyConfig
from .factory import build_receivers
from .model import Notification

log = logging.getLogger("gatekeeper.notify")


class _Retryable(Exception):
    """A connection error, a timeout, a 5xx or a 429: worth another attempt."""


class _Refused(Exception):
    """The receiver answered 4xx: the same request will be refused again."""


class _Abandoned(Exception):
    """The notifier was closed and its drain time ran out."""


class _Lane:
    """One receiver's queue, thread and HTTP client."""

    def __init__(self, receiver: Receiver, notifier: Notifier, queue_size: int) -> None:
        self.receiver = receiver
        self.notifier = notifier
        self.queue: deque[Notification] = deque()
        self.queue_size = queue_size
        self.cond = threading.Condition()
        self.closing = False
        self.abandoned = threading.Event()
        self.dropped = 0
        self.client = httpx.Client(
            timeout=httpx.Timeout(notifier.timeout_s),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self.thread = threading.Thread(
            target=self._run, name=f"notify-{receiver.name}", daemon=True
        )

    # -- the caller's side: never blocks for longer than a lock -----------------------------

    def put(self, n: Notification) -> None:
        lost: Notification | None = None
        with self.cond:
            if self.closing:
                lost = n
            else:
                if len(self.queue) >= self.queue_size:
                    lost = self.queue.popleft()
                self.queue.append(n)
                self.cond.notify()
            if lost is not None:
                self.dropped += 1
        if lost is not None:
            why = "closed" if lost is n else f"full ({self.queue_size})"
            log.warning(
                "notify %s: queue %s, dropped %s of %s",
                self.receiver.name,
                why,
                lost.kind.value,
                lost.release_id,
            )
            self.notifier.count(self.receiver.name, NotificationResult.DROPPED)

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()

    def abandon(self) -> None:
        self.abandoned.set()
        self.stop()

    # -- the lane's thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closing:
                        self.cond.wait()
                    if not self.queue:
                        return
                    if self.abandoned.is_set():
                        left = len(self.queue)
                        self.queue.clear()
                        self.dropped += left
                        for _ in range(left):
                            self.notifier.count(self.receiver.name, NotificationResult.DROPPED)
                        return
                    n = self.queue.popleft()
                self._deliver(n)
        finally:
            self.client.close()

    def _deliver(self, n: Notification) -> None:
        what = f"notify {self.receiver.name}: {n.kind.value} of {n.release_id}"
        nf = self.notifier
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Retryable),
                stop=tenacity.stop_after_attempt(nf.attempts),
                wait=tenacity.wait_random_exponential(
                    multiplier=nf.backoff_s, max=nf.max_backoff_s
                ),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    self._attempt(n)
        except _Abandoned:
            log.warning("%s: dropped, the notifier closed before it was delivered", what)
            with self.cond:
                self.dropped += 1
            nf.count(self.receiver.name, NotificationResult.DROPPED)
        except _Retryable as e:
            log.warning("%s: not delivered after %d attempts: %s", what, nf.attempts, e)
            nf.count(self.receiver.name, NotificationResult.FAILED)
        except _Refused as e:
            log.warning("%s: refused, not retried: %s", what, e)
            nf.count(self.receiver.name, NotificationResult.FAILED)
        except Exception:  # a receiver's defect must not end its lane
            log.exception("%s: could not be built or sent", what)
            nf.count(self.receiver.name, NotificationResult.FAILED)
        else:
            nf.count(self.receiver.name, NotificationResult.SENT)

    def _attempt(self, n: Notification) -> None:
        if self.abandoned.is_set():
            raise _Abandoned
        out = self.receiver.request(n, self.notifier.clock.now())
        try:
            response = self.client.post(out.url, content=out.body, headers=dict(out.headers))
        except httpx.TransportError as e:
            raise _Retryable(f"{type(e).__name__} from {where(out.url)}: {e}") from e
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text[:200]
        message = f"HTTP {status} from {where(out.url)}" + (f": {text}" if text else "")
        if status == 429 or status >= 500:
            raise _Retryable(message)
        raise _Refused(message)

    def _sleep(self, seconds: float) -> None:
        self.abandoned.wait(seconds)  # a close that runs out of time cuts the backoff short


class Notifier:
    """Queues notifications for their receivers and sends them from background threads.

    ``notify`` never blocks and never raises; ``close`` drains the queues. Use it as a
    context manager or call ``close`` once.
    """

    def __init__(
        self,
        receivers: Sequence[Receiver],
        *,
        metrics: ServiceMetrics | None = None,
        queue_size: int = 1000,
        attempts: int = 3,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        names = [r.name for r in receivers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"receivers named {', '.join(twice)} more than once")
        if queue_size < 1:
            raise ValueError(f"queue_size {queue_size} is below 1")
        if attempts < 1:
            raise ValueError(f"attempts {attempts} is below 1")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s {timeout_s} is not above 0")
        self.metrics = metrics
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self._lanes = [_Lane(r, self, queue_size) for r in receivers]
        self._closed = False
        for lane in self._lanes:
            lane.thread.start()

    @classmethod
    def from_config(
        cls,
        config: NotifyConfig,
        *,
        metrics: ServiceMetrics | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Notifier:
        """A notifier for the configured receivers; InvalidInput when a secret cannot be
        read."""
        return cls(
            build_receivers(config, environ=environ),
            metrics=metrics,
            queue_size=config.queue_size,
            attempts=config.attempts,
            timeout_s=config.timeout,
            max_backoff_s=config.max_backoff,
            clock=clock,
        )

    @property
    def receivers(self) -> list[str]:
        return [lane.receiver.name for lane in self._lanes]

    def notify(self, notification: Notification) -> None:
        """Queue ``notification`` for each receiver that takes its kind; returns at once."""
        for lane in self._lanes:
            if notification.kind in lane.receiver.kinds:
                try:
                    lane.put(notification)
                except Exception:  # never the caller's problem
                    log.exception("notify %s: could not queue", lane.receiver.name)

    def dropped(self, receiver: str | None = None) -> int:
        """Notifications dropped (queue full, or closed first), for one receiver or all."""
        return sum(lane.dropped for lane in self._lanes if receiver in (None, lane.receiver.name))

    def pending(self) -> int:
        """Notifications queued and not yet taken up for sending."""
        return sum(len(lane.queue) for lane in self._lanes)

    def count(self, receiver: str, result: NotificationResult) -> None:
        if self.metrics is not None:
            self.metrics.notification(receiver, result)

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued, for up to ``timeout`` seconds, then stop. True when every
        queued notification was delivered or given up on in time; otherwise what is left
        is dropped (and counted), and the threads end within one attempt's timeout."""
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            lane.stop()
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        late = [lane for lane in self._lanes if lane.thread.is_alive()]
        for lane in late:
            lane.abandon()
        for lane in late:
            lane.thread.join(self.timeout_s + 1.0)
        if late:
            log.warning(
                "notify: closing took over %ss; dropped what %s still had",
                timeout,
                ", ".join(lane.receiver.name for lane in late),
            )
        return not late

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
