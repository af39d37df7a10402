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


class Kind(StrEnum):
    THRESHOLD = "threshold"  # the candidate against a fixed threshold
    BASELINE = "baseline"  # the candidate against the stable version over the same window
    MANN_WHITNEY = "mann_whitney"  # the candidate's samples against the baseline's samples


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
    confidence: float = Field(default=0.95, ge=0, lt=1)  # error_ratio gates; 0 turns it off
    # A warning error_ratio gate is judged again on the counts since the breach began,
    # looking back this far: a fixed window never gathers enough evidence. 0 turns it off.
    evidence_window: Duration = 0.0

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
    def _consistent(self) -> GateSpec:
        where = f"gate {self.name!r}"
        if (self.metric is None) == (self.query is None):
            raise ValueError(f"{where}: set exactly one of metric (error_ratio, latency) or query")
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
        if self.kind is Kind.THRESHOLD and self.threshold is None:
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
        if self.kind is Kind.BASELINE and self.max_increase is None:
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
        return "value"

    def scaled(self, factor: float) -> GateSpec:
        """The same gate with every duration divided by ``factor`` (time compression)."""
        changes: dict[str, Any] = {
            f: compressed(getattr(self, f), factor)
            for f in ("window", "sustained_for", "inconclusive_deadline", "evidence_window")
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
    gates: tuple[GateSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> GateSet:
        if self.profile not in PROFILE_NAMES:
            raise ValueError(
                f"profile {self.profile!r} is not known; "
                f"allowed: {', '.join(sorted(PROFILE_NAMES))}"
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
    """The operating rules: abort at >5%, roll back on >2% held for 15m, p95 under 500ms."""
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
