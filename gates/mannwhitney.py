"""Mann-Whitney U canary gate: R's wilcox.test normal approximation and a High/Low/Pass verdict."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from gatekeeper.domain.errors import InvalidInput

__all__ = [
    "Classification",
    "InsufficientSampleError",
    "MannWhitneyInputError",
    "MannWhitneyVerdict",
    "WilcoxResult",
    "classify",
    "wilcox_test",
]

# R's defaults: wilcox.test(tol.root = 1e-4) and uniroot(maxiter = 1000).
DEFAULT_TOL_ROOT = 1e-4
_MAX_ITER = 1000
_EPSILON = sys.float_info.epsilon
_STD_NORMAL = NormalDist()


class MannWhitneyInputError(InvalidInput, ValueError):
    """An argument of the Mann-Whitney test is not valid."""


class InsufficientSampleError(MannWhitneyInputError):
    """A sample has fewer finite observations than the test needs."""

    def __init__(self, sample: str, size: int, given: int, required: int = 1) -> None:
        dropped = given - size
        detail = f" ({given} given, {dropped} non-finite dropped)" if dropped else ""
        super().__init__(
            f"sample {sample!r} has {size} finite observation{'s' if size != 1 else ''}"
            f"{detail}; at least {required} required"
        )
        self.sample = sample
        self.size = size
        self.given = given
        self.required = required


@dataclass(frozen=True)
class WilcoxResult:
    """Outcome of the two-sided rank-sum test, field for field as R's ``wilcox.test`` reports it.

    ``note`` explains any place where R would stop with an error or return NaN and this module
    returns a defined value instead (all observations tied, both samples constant), and counts
    dropped non-finite values.
    """

    statistic: float
    p_value: float
    conf_int: tuple[float, float] | None
    estimate: float | None
    n_x: int
    n_y: int
    note: str | None = None


class Classification(StrEnum):
    """Verdict of the candidate against the baseline."""

    HIGH = "High"
    LOW = "Low"
    PASS = "Pass"


@dataclass(frozen=True)
class MannWhitneyVerdict:
    """A classification, the test behind it and a one-line human-readable reason."""

    classification: Classification
    result: WilcoxResult
    reason: str


def _finite(values: Sequence[float], sample: str) -> list[float]:
    """Keep the finite values, as ``x[is.finite(x)]`` does; raise if none are left."""
    kept = [v for v in (float(item) for item in values) if math.isfinite(v)]
    if not kept:
        raise InsufficientSampleError(sample, 0, len(values))
    return kept


def _rank_stats(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Sum of the mid-ranks of ``xs`` in the pooled sample, and the tie term sum(t^3 - t)."""
    pooled = [*xs, *ys]
    n_x = len(xs)
    order = sorted(range(len(pooled)), key=pooled.__getitem__)
    rank_sum_x = 0.0
    tie_term = 0.0
    i = 0
    n = len(order)
    while i < n:
        value = pooled[order[i]]
        j = i + 1
        while j < n and pooled[order[j]] == value:
            j += 1
        in_x = sum(1 for k in range(i, j) if order[k] < n_x)
        if in_x:
            rank_sum_x += (i + 1 + j) / 2.0 * in_x
        size = j - i
        if size > 1:
            tie_term += float(size**3 - size)
        i = j
    return rank_sum_x, tie_term


def _sigma(n_x: float, n_y: float, tie_term: float) -> float:
    """Standard deviation of W under H0 with the tie correction, in R's order of operations."""
    return math.sqrt(
        (n_x * n_y / 12) * ((n_x + n_y + 1) - tie_term / ((n_x + n_y) * (n_x + n_y - 1)))
    )


def _sign_half(value: float) -> float:
    """R's ``sign(value) * 0.5``: the two-sided continuity correction."""
    if value > 0:
        return 0.5
    if value < 0:
        return -0.5
    return 0.0


def _zeroin(
    f: Callable[[float], float],
    ax: float,
    bx: float,
    fa: float,
    fb: float,
    tol: float,
    max_iter: int = _MAX_ITER,
) -> float:
    """Brent's root finder in the Forsythe-Malcolm-Moler form used by R's ``uniroot``.

    The step function being solved has flat stretches, so the root returned depends on the exact
    sequence of trial points; following the same algorithm reproduces R's numbers.
    """
    a, b, c = ax, bx, ax
    fc = fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(max_iter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _EPSILON * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < 0.75 * cb * q - abs(tol_act * q) / 2 and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _check_level(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise MannWhitneyInputError(
            f"{name} must be a number strictly between 0 and 1, got {value!r}"
        )


def _wilcox(
    x_raw: Sequence[float],
    y_raw: Sequence[float],
    *,
    mu: float,
    conf_level: float,
    tol_root: float,
    names: tuple[str, str],
) -> WilcoxResult:
    if not math.isfinite(mu):
        raise MannWhitneyInputError(f"mu must be a finite number, got {mu!r}")
    _check_level("conf_level", conf_level)
    if not (math.isfinite(tol_root) and tol_root > 0):
        raise MannWhitneyInputError(f"tol_root must be a positive number, got {tol_root!r}")
    x = _finite(x_raw, names[0])
    y = _finite(y_raw, names[1])
    notes = [
        f"dropped {len(raw) - len(kept)} non-finite {name} value(s)"
        for raw, kept, name in ((x_raw, x, names[0]), (y_raw, y, names[1]))
        if len(raw) != len(kept)
    ]
    n_x = float(len(x))
    n_y = float(len(y))

    rank_sum, tie_term = _rank_stats([xi - mu for xi in x], y)
    statistic = rank_sum - n_x * (n_x + 1) / 2
    sigma = _sigma(n_x, n_y, tie_term)

    def result(
        p_value: float, conf_int: tuple[float, float] | None, estimate: float | None
    ) -> WilcoxResult:
        return WilcoxResult(
            statistic=statistic,
            p_value=p_value,
            conf_int=conf_int,
            estimate=estimate,
            n_x=len(x),
            n_y=len(y),
            note="; ".join(notes) or None,
        )

    if sigma == 0.0:
        notes.insert(
            0,
            "all observations are tied: no evidence of a shift (p-value 1) and no confidence "
            "interval (R: 'cannot compute confidence interval when all observations are tied')",
        )
        return result(1.0, None, None)

    z = statistic - n_x * n_y / 2
    z = (z - _sign_half(z)) / sigma
    p_value = math.erfc(abs(z) / math.sqrt(2.0))

    if min(x) == max(x) and min(y) == max(y):
        # Every pairwise difference is the same number d, so the interval R clamps to
        # [min(x) - max(y), max(x) - min(y)] collapses to d; R itself stops because the
        # pooled sample is all tied at d.
        shift = x[0] - y[0]
        notes.insert(
            0,
            "both samples are constant: every pairwise difference equals the estimate, "
            "which is reported as a zero-width interval (R cannot compute this interval)",
        )
        return result(p_value, (shift, shift), shift)

    def w_at(d: float, correct: bool = True) -> float:
        rs, tt = _rank_stats([xi - d for xi in x], y)
        dz = rs - n_x * (n_x + 1) / 2 - n_x * n_y / 2
        sigma_ci = _sigma(n_x, n_y, tt)
        if sigma_ci == 0.0:
            # Only reachable when rounding in x - d collapses the pooled sample.
            return 0.0
        return (dz - (_sign_half(dz) if correct else 0.0)) / sigma_ci

    mu_min = min(x) - max(y)
    mu_max = max(x) - min(y)
    w_min = w_at(mu_min)
    w_max = w_at(mu_max)

    def root(zq: float) -> float:
        f_lower = w_min - zq
        if f_lower <= 0:
            return mu_min
        f_upper = w_max - zq
        if f_upper >= 0:
            return mu_max
        return _zeroin(lambda d: w_at(d) - zq, mu_min, mu_max, f_lower, f_upper, tol_root)

    alpha = 1 - conf_level
    z_lower = _STD_NORMAL.inv_cdf(alpha / 2)
    conf_int = (root(-z_lower), root(z_lower))
    # R sets correct <- FALSE before this call, so the estimate solves the uncorrected statistic.
    estimate = _zeroin(
        lambda d: w_at(d, correct=False),
        mu_min,
        mu_max,
        w_at(mu_min, correct=False),
        w_at(mu_max, correct=False),
        tol_root,
    )
    return result(p_value, conf_int, estimate)


def wilcox_test(
    x: Sequence[float],
    y: Sequence[float],
    *,
    mu: float = 0.0,
    conf_level: float = 0.95,
    tol_root: float = DEFAULT_TOL_ROOT,
) -> WilcoxResult:
    """Two-sample Wilcoxon rank-sum test of ``x`` against ``y`` for a location shift ``mu``.

    Matches R's ``wilcox.test(x, y, mu=mu, conf.int=TRUE, conf.level=conf_level, exact=FALSE,
    correct=TRUE)``: two-sided normal approximation with tie and continuity corrections, and the
    confidence interval and "difference in location" found by root finding on the standardized
    statistic. Non-finite values are dropped first (``x[is.finite(x)]``) and counted in ``note``;
    R 4.x drops only NA/NaN and ranks +-Inf as extreme values, after which it cannot compute the
    interval.

    ``tol_root`` is R's ``tol.root``, an absolute tolerance on the interval ends and the estimate;
    shrink it for metrics whose differences are of that order or smaller.

    Raises ``InsufficientSampleError`` when a sample has no finite value left and
    ``MannWhitneyInputError`` for an invalid ``mu``, ``conf_level`` or ``tol_root``.
    """
    return _wilcox(x, y, mu=mu, conf_level=conf_level, tol_root=tol_root, names=("x", "y"))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def classify(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    metric: str,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    conf_level: float = 0.95,
) -> MannWhitneyVerdict:
    """Judge the candidate sample against the baseline sample of one metric.

    High when the candidate is significantly greater (p < alpha and CI lower bound > min_effect),
    Low when significantly lower (p < alpha and CI upper bound < -min_effect), else Pass. The test
    is ``wilcox_test(candidate, baseline, conf_level=conf_level)``; a Pass without an interval
    (all observations tied) says so in the reason.
    """
    _check_level("alpha", alpha)
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise MannWhitneyInputError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
    result = _wilcox(
        candidate,
        baseline,
        mu=0.0,
        conf_level=conf_level,
        tol_root=DEFAULT_TOL_ROOT,
        names=("candidate", "baseline"),
    )
    sizes = f"n={result.n_x}/{result.n_y}"
    p_text = f"p={result.p_value:.2g}"
    if result.conf_int is None or result.estimate is None:
        return MannWhitneyVerdict(
            Classification.PASS,
            result,
            f"{metric}: no difference from baseline, all observations tied ({p_text}, {sizes})",
        )

    low, high = result.conf_int
    details = (
        f"shift {result.estimate:+.4g}, {conf_level * 100:g}% CI [{_fmt(low)}, {_fmt(high)}], "
        f"{p_text}, {sizes}"
    )
    significant = result.p_value < alpha
    if significant and low > min_effect:
        classification = Classification.HIGH
        summary = "candidate higher than baseline"
    elif significant and high < -min_effect:
        classification = Classification.LOW
        summary = "candidate lower than baseline"
    else:
        classification = Classification.PASS
        if not significant:
            summary = "no significant difference from baseline"
        elif min_effect > 0:
            summary = f"difference not beyond min_effect {_fmt(min_effect)}"
        else:
            summary = "difference not confirmed by the confidence interval"
    return MannWhitneyVerdict(classification, result, f"{metric}: {summary} ({details})")
