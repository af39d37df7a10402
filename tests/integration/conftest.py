"""Integration fixtures: a real Prometheus, with backfilled history for backtests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.history import Traffic, openmetrics, series
from tests.support.prom import LocalPrometheus as PrometheusServer
from tests.support.prom import backfill, prometheus

# Every backtest scenario is one app in the same history; the release starts at T0.
HISTORY_MINUTES = 30
HEALTHY = Traffic(rps=20, errors=0.005, client_errors=0.10)


def _scenarios() -> dict[str, Callable[[float], Traffic]]:
    return {
        "healthy": lambda t: HEALTHY,
        "errors6": lambda t: Traffic(rps=20, errors=0.06, client_errors=0.10),
        "errors3": lambda t: Traffic(rps=20, errors=0.03 if t <= 20 * 60 else 0.0),
        "spike3": lambda t: Traffic(rps=20, errors=0.03 if t <= 5 * 60 else 0.002),
        "lowtraffic": lambda t: Traffic(rps=0.1, errors=0.0),
        "slow": lambda t: Traffic(rps=20, errors=0.0, slow=0.2, slow_s=0.65),
        "clienterrors": lambda t: Traffic(rps=20, errors=0.0, client_errors=0.5),
    }


@pytest.fixture(scope="session")
def history_start() -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Far enough back that the whole range is history, close enough to stay in retention.
    return now.replace(minute=0) - timedelta(hours=3)


@pytest.fixture(scope="session")
def history_prometheus(
    history_start: datetime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    data = tmp_path_factory.mktemp("prom-history") / "data"
    t0 = history_start.timestamp()
    parts = [series(app, "v2", t0, HISTORY_MINUTES * 60, fn) for app, fn in _scenarios().items()]
    parts.append(series("healthy", "v1", t0 - 600, HISTORY_MINUTES * 60 + 600, lambda t: HEALTHY))
    backfill(data, openmetrics(parts))
    with prometheus(data_dir=data, scrape_interval="15s") as server:
        yield server
