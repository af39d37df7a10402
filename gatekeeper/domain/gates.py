"""Gate specs: what to measure, the threshold, the windows, and what no data means.

Plain data with its own validation, so a release spec's ``gates`` is typed. Reading a
gates file and the metric profiles' details are in gates/; the judging is there too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .durations import Duration, compressed, format_duration
from .errors import InvalidInput
from .templates import check_template
from .validation import error_text

# The metric profiles by name (their metric names live in gates/profiles.py).
PROFILE_NAMES = ("http", "istio", "nginx", "envoy")
# Where CPU and memory come from: the app's own process metrics, or cAdvisor's per
# container figures on Kubernetes (gates/profiles.py).
RESOURCE_SOURCES = ("process", "cadvisor")
# The database pool exporters a db_pool gate knows (their metric names: gates/profiles.py).
POOL_MAPPINGS = ("hikaricp", "hikaricp-prometheus", "otel", "otel-1.26", "go-sql", "pgbouncer")

MIN_SCALED_INTERVAL = 0.25
GATE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Refusals say the pattern in words, as the release spec's do.
_PATTERN_WORDS = {
    GATE_NAME: "a gate name: a-z, 0-9, '_', '.' and '-', at most 63 characters, "
    "starting with a letter or digit",
}


class Comparison(StrEnum):
    """The gate breaches when ``value <comparison> threshold``."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="

    def breaches(self, value: float, threshold: float) -> bool:
        if self is Comparison.GT:
            return value > threshold
        if self is Comparison.GE:
            return value >= threshold
        if self is Comparison.LT:
            return value < threshold
        return value <= threshold

    @property
    def holds_text(self) -> str:
        """The comparison that is true when the gate is *not* breached."""
        return {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[self.value]


class Metric(StrEnum):
    ERROR_RATIO = "error_ratio"  # 5xx / all requests
    LATENCY = "latency"  # a quantile of the duration histogram, in seconds
    REQUESTS = "requests"  # the candidate's share of requests, and the total request rate
    CPU = "cpu"  # CPU seconds per request
    MEMORY = "memory"  # resident memory, in bytes
    DB_POOL = "db_pool"  # connections in use / the pool's maximum


class Kind(StrEnum):
    THRESHOLD = "threshold"  # the candidate against a fixed threshold
    BASELINE = "baseline"  # the candidate against the stable version over the same window
    MANN_WHITNEY = "mann_whitney"  # the candidate's samples against the baseline's samples
    TRAFFIC = "traffic"  # requests against the weight the router was told
    GROWTH = "growth"  # how fast the candidate's memory grows (a leak)


# The metrics of the resource gates, and the kinds each one may be judged by.
RESOURCE_KINDS = {
    Metric.REQUESTS: (Kind.TRAFFIC,),
    Metric.CPU: (Kind.BASELINE,),
    Metric.MEMORY: (Kind.BASELINE, Kind.GROWTH),
    Metric.DB_POOL: (Kind.THRESHOLD,),
}


class NoData(StrEnum):
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(_Strict):
    """One gate. Durations accept "30s", "2m", "1h" or seconds."""

    name: str = Field(pattern=GATE_NAME)
    kind: Kind = Kind.THRESHOLD
    metric: Metric | None = None
    query: str | None = None
    requests_query: str | None = None
    quantile: float = Field(default=0.95, gt=0, lt=1)
    comparison: Comparison = Comparison.GT
    threshold: float | None = None
    max_increase: float | None = Field(default=None, ge=0)
    window: Duration = 120.0
    sustained_for: Duration = 0.0
    confirm_window: Duration | None = None
    min_requests: int = Field(default=100, ge=0)
    interval: Duration = 30.0
    no_data: NoData = NoData.INCONCLUSIVE
    inconclusive_deadline: Duration = 1800.0
    guard: bool = False
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_effect: float = Field(default=0.0, ge=0)
    # error_ratio, traffic, cpu and memory gates: fail only when significant; 0 turns it off
    confidence: float = Field(default=0.95, ge=0, lt=1)
    # A warning error_ratio gate is judged again on the counts since the breach began,
    # looking back this far: a fixed window never gathers enough evidence. 0 turns it off.
    evidence_window: Duration = 0.0
    # traffic: how far the candidate's requests per unit of weight may fall short of (or
    # exceed) stable's, and how far the total request rate may drop after a shift.
    tolerance: float = Field(default=0.1, gt=0, lt=1)
    max_drop: float = Field(default=0.1, gt=0, lt=1)
    # cpu, memory against the baseline: candidate <= baseline x max_ratio
    max_ratio: float | None = Field(default=None, gt=1)
    # growth: memory may grow at most this share of itself per growth_period
    max_growth: float | None = Field(default=None, gt=0)
    growth_period: Duration = 3600.0
    # cpu, memory, growth: judged from this long after the candidate's first traffic
    warmup: Duration = 0.0
    # db_pool: the exporter whose metrics to read (one of POOL_MAPPINGS); None: any of them
    pool: str | None = None

    @model_validator(mode="after")
    def _evidence_window_applies(self) -> GateSpec:
        if not self.evidence_window:
            return self
        where = f"gate {self.name!r}: evidence_window {format_duration(self.evidence_window)}"
        if (
            self.metric is not Metric.ERROR_RATIO
            or self.kind is not Kind.THRESHOLD
            or self.sustained_for
        ):
            raise ValueError(
                f"{where} applies to error_ratio threshold gates without sustained_for only"
            )
        if not self.confidence:
            raise ValueError(f"{where} needs confidence above 0 (at 0 a breach fails at once)")
        if self.evidence_window <= self.window:
            raise ValueError(
                f"{where} must be longer than the window {format_duration(self.window)} "
                "(or 0 to turn it off)"
            )
        return self

    @model_validator(mode="after")
    def _resources(self) -> GateSpec:
        """The resource gates' metrics and kinds go together, with their own limits."""
        where = f"gate {self.name!r}"
        kinds = RESOURCE_KINDS.get(self.metric) if self.metric is not None else None
        if kinds is None:
            if self.kind in (Kind.TRAFFIC, Kind.GROWTH):
                wanted = "requests" if self.kind is Kind.TRAFFIC else "memory"
                raise ValueError(f"{where}: a {self.kind.value} gate judges metric {wanted}")
            for name in ("max_ratio", "max_growth", "pool"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{where}: {name} applies to the resource gates only")
            if self.warmup:
                raise ValueError(
                    f"{where}: warmup applies to the cpu and memory gates only "
                    "(metric cpu or memory)"
                )
            return self
        assert self.metric is not None
        if self.kind not in kinds:
            allowed = " or ".join(k.value for k in kinds)
            raise ValueError(
                f"{where}: metric {self.metric.value} is judged by kind {allowed}, "
                f"not {self.kind.value}"
            )
        if self.metric is Metric.CPU or (
            self.metric is Metric.MEMORY and self.kind is Kind.BASELINE
        ):
            if self.max_ratio is None:
                raise ValueError(
                    f"{where}: a {self.metric.value} gate against the baseline needs max_ratio "
                    "(the candidate's figure may be at most max_ratio times the baseline's)"
                )
            if self.max_increase is not None:
                raise ValueError(
                    f"{where}: a {self.metric.value} gate compares by max_ratio, not max_increase"
                )
        elif self.max_ratio is not None:
            raise ValueError(f"{where}: max_ratio applies to cpu and memory baseline gates only")
        if self.kind is Kind.GROWTH and self.max_growth is None:
            raise ValueError(
                f"{where}: a growth gate needs max_growth (a share of its size per "
                "growth_period, e.g. 0.2 for 20% an hour)"
            )
        if self.kind is not Kind.GROWTH and self.max_growth is not None:
            raise ValueError(f"{where}: max_growth applies to growth gates only")
        if self.growth_period <= 0:
            raise ValueError(f"{where}: growth_period must be longer than 0s")
        if self.metric is Metric.DB_POOL:
            if self.threshold is None or not 0 < self.threshold <= 1:
                raise ValueError(
                    f"{where}: a db_pool gate needs threshold, a share of the pool in use "
                    "above 0 and at most 1 (0.8: 80%)"
                )
            if self.comparison not in (Comparison.GT, Comparison.GE):
                raise ValueError(f"{where}: a db_pool gate breaches above its threshold: use '>'")
        if self.pool is not None and (
            self.metric is not Metric.DB_POOL or self.pool not in POOL_MAPPINGS
        ):
            raise ValueError(
                f"{where}: pool {self.pool!r} names the exporter of a db_pool gate; "
                f"allowed: {', '.join(POOL_MAPPINGS)}"
            )
        if self.warmup and self.metric not in (Metric.CPU, Metric.MEMORY):
            raise ValueError(f"{where}: warmup applies to the cpu and memory gates only")
        if self.query is not None:
            raise ValueError(f"{where}: set exactly one of metric or query")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> GateSpec:
        where = f"gate {self.name!r}"
        if (self.metric is None) == (self.query is None):
            raise ValueError(
                f"{where}: set exactly one of metric "
                f"({', '.join(m.value for m in Metric)}) or query"
            )
        for field in ("query", "requests_query"):
            tpl = getattr(self, field)
            if tpl is not None:
                try:
                    check_template(tpl, field=f"{where}: {field}")
                except InvalidInput as e:  # a ValueError, so the file and field are named
                    raise ValueError(str(e)) from e
        if self.window <= 0:
            raise ValueError(f"{where}: window must be longer than 0s")
        if self.interval <= 0:
            raise ValueError(f"{where}: interval must be longer than 0s")
        if (
            self.kind is Kind.THRESHOLD
            and self.threshold is None
            and self.metric is not Metric.DB_POOL
        ):
            raise ValueError(f"{where}: a threshold gate needs threshold")
        if self.metric is Metric.LATENCY and self.comparison is not Comparison.GT:
            raise ValueError(f"{where}: a latency gate breaches when above its threshold: use '>'")
        if (
            self.metric is Metric.LATENCY
            and self.kind is Kind.THRESHOLD
            and (self.threshold is not None and self.threshold <= 0)
        ):
            raise ValueError(f"{where}: latency threshold {self.threshold} must be above 0 seconds")
        if self.kind is Kind.MANN_WHITNEY and self.metric is not Metric.ERROR_RATIO:
            raise ValueError(f"{where}: a mann_whitney gate judges metric error_ratio")
        if (
            self.kind is Kind.BASELINE
            and self.max_increase is None
            and self.metric not in (Metric.CPU, Metric.MEMORY)
        ):
            raise ValueError(f"{where}: a baseline gate needs max_increase")
        if (
            self.kind is Kind.BASELINE
            and self.query is not None
            and self.requests_query is None
            and self.min_requests > 0
        ):
            raise ValueError(
                f"{where}: a baseline gate with a query needs requests_query, so that "
                f"min_requests ({self.min_requests}) applies to the candidate and the baseline "
                "alike (or set min_requests: 0)"
            )
        if self.kind is not Kind.THRESHOLD and self.sustained_for:
            raise ValueError(f"{where}: sustained_for applies to threshold gates only")
        if self.metric is not Metric.ERROR_RATIO and self.sustained_for:
            raise ValueError(f"{where}: sustained_for applies to error_ratio gates only")
        if self.sustained_for and self.sustained_for < self.interval:
            raise ValueError(
                f"{where}: sustained_for {format_duration(self.sustained_for)} is shorter "
                f"than the interval {format_duration(self.interval)}"
            )
        return self

    @property
    def confirm_s(self) -> float:
        return self.confirm_window if self.confirm_window is not None else self.sustained_for

    @property
    def subject(self) -> str:
        """How reasons name the measured figure."""
        if self.metric is Metric.LATENCY:
            return f"p{round(self.quantile * 100):d} latency"
        if self.metric is Metric.ERROR_RATIO:
            return "error ratio"
        if self.metric is Metric.CPU:
            return "CPU per request"
        if self.metric is Metric.MEMORY:
            return "memory growth" if self.kind is Kind.GROWTH else "resident memory"
        if self.metric is Metric.DB_POOL:
            return "pool in use"
        if self.metric is Metric.REQUESTS:
            return "request share"
        return "value"

    def scaled(self, factor: float) -> GateSpec:
        """The same gate with every duration divided by ``factor`` (time compression)."""
        changes: dict[str, Any] = {
            f: compressed(getattr(self, f), factor)
            for f in (
                "window",
                "sustained_for",
                "inconclusive_deadline",
                "evidence_window",
                "growth_period",
                "warmup",
            )
        }
        # Compressed time does not make Prometheus answer faster: intervals stop at 250ms.
        changes["interval"] = max(
            compressed(self.interval, factor), min(self.interval, MIN_SCALED_INTERVAL)
        )
        if self.confirm_window is not None:
            changes["confirm_window"] = compressed(self.confirm_window, factor)
        return self.model_copy(update=changes)


class GateSet(_Strict):
    """The gates of a release, and the metric profile they read."""

    profile: str = "http"
    resources: str = "process"  # where CPU and memory come from: process | cadvisor
    gates: tuple[GateSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> GateSet:
        if self.profile not in PROFILE_NAMES:
            raise ValueError(
                f"profile {self.profile!r} is not known; "
                f"allowed: {', '.join(sorted(PROFILE_NAMES))}"
            )
        if self.resources not in RESOURCE_SOURCES:
            raise ValueError(
                f"resources {self.resources!r} is not known; allowed: "
                f"{', '.join(RESOURCE_SOURCES)} (the app's process_* metrics, or cAdvisor's "
                "container_* metrics on Kubernetes)"
            )
        seen: set[str] = set()
        for g in self.gates:
            if g.name in seen:
                raise ValueError(f"gate name {g.name!r} is used twice")
            seen.add(g.name)
        if not self.gates:
            raise ValueError("a gate set needs at least one gate")
        return self

    def scaled(self, factor: float) -> GateSet:
        if factor <= 0:
            raise InvalidInput(f"time compression factor {factor} must be above 0")
        return self.model_copy(update={"gates": tuple(g.scaled(factor) for g in self.gates)})

    @property
    def guards(self) -> tuple[GateSpec, ...]:
        return tuple(g for g in self.gates if g.guard)


def default_gates(profile: str = "http") -> GateSet:
    """The operating rules: abort at >5%, roll back on >2% held for 15m, p95 under 500ms;
    and request rate, CPU, memory and the database pool stay stable (README: why these
    thresholds)."""
    return GateSet(
        profile=profile,
        gates=(
            GateSpec(
                name="abort",
                metric=Metric.ERROR_RATIO,
                comparison=Comparison.GT,
                threshold=0.05,
                window=120,
                interval=0.25,  # a guard: one cheap query per tick for every release
                guard=True,
                evidence_window=900,  # a breach held for minutes gathers enough evidence
            ),
            GateSpec(
                name="sustained",
                metric=Metric.ERROR_RATIO,
                comparison=Comparison.GT,
                threshold=0.02,
                window=300,
                sustained_for=900,
                confirm_window=900,
                interval=30,
            ),
            GateSpec(
                name="latency",
                metric=Metric.LATENCY,
                quantile=0.95,
                comparison=Comparison.GT,
                threshold=0.5,
                window=300,
                interval=30,
            ),
            # Judged every 30s for hours: 99% per look (stricter in few requests) keeps a
            # healthy candidate's noise from failing it; a tenth of the weight's odds
            # leaves room for probes and per-connection routing.
            GateSpec(
                name="traffic",
                kind=Kind.TRAFFIC,
                metric=Metric.REQUESTS,
                window=900,  # evidence since the shift, up to 15m: a low rate needs it
                interval=30,
                tolerance=0.1,
                max_drop=0.1,
                confidence=0.99,
            ),
            # Per request, so the candidate's smaller share is no excuse; after a warm-up,
            # since a JIT or a cold cache burns CPU in the first minutes.
            GateSpec(
                name="cpu",
                kind=Kind.BASELINE,
                metric=Metric.CPU,
                max_ratio=1.5,
                window=300,
                interval=30,
                warmup=300,
            ),
            GateSpec(
                name="memory",
                kind=Kind.BASELINE,
                metric=Metric.MEMORY,
                max_ratio=1.5,
                window=300,
                interval=30,
                warmup=300,
            ),
            GateSpec(
                name="db-pool",
                metric=Metric.DB_POOL,
                threshold=0.8,
                window=120,
                interval=30,
            ),
        ),
    )


def parse_gate_set(data: Any, *, source: str = "gates") -> GateSet:
    """A GateSet from decoded YAML/JSON (a list alone is its gates); InvalidInput names
    each bad field."""
    if isinstance(data, GateSet):
        return data
    if isinstance(data, list):
        data = {"gates": data}
    try:
        return GateSet.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(error_text(e, source, _PATTERN_WORDS)) from e
