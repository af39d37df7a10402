"""Tests for the Mann-Whitney U gate against reference values computed by R."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from gatekeeper.domain.errors import InvalidInput
from gates.mannwhitney import (
    Classification,
    InsufficientSampleError,
    MannWhitneyInputError,
    WilcoxResult,
    classify,
    wilcox_test,
)

# Interval ends and estimates come from a root finder with R's absolute tolerance 1e-4, so they
# are compared with the same relative tolerance as the rest plus a tiny absolute slack for
# values that are (almost) zero.
REL = 1e-9
ABS = 1e-12


@dataclass(frozen=True)
class RCase:
    name: str
    x: list[float]
    y: list[float]
    mu: float
    conf_level: float
    statistic: float
    p_value: float
    conf_int: tuple[float, float]
    estimate: float


# Reference values printed by R 4.2.2 with
#   r <- wilcox.test(x, y, mu=..., conf.level=..., conf.int=TRUE, exact=FALSE, correct=TRUE)
#   sprintf("%.17g", c(r$statistic, r$p.value, r$conf.int, r$estimate))
# where x and y are the vectors of the case, written out as c(...).
# fmt: off
R_CASES = [
    # continuous values, no ties
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "no_ties",
        x=[12.5764, 12.8989, 10.1327, 8.4709, 7.8157, 10.0627, 7.9558, 7.1263, 10.3986, 10.2667,
           11.0929, 8.1721],
        y=[13.6763, 7.6743, 9.7897, 9.293, 10.6703, 6.1958, 8.1704, 7.4971, 6.8507, 7.3123],
        mu=0.0,
        conf_level=0.95,
        statistic=83.0,
        p_value=0.13791345941250954,
        conf_int=(-0.5479529742550034, 2.9543724830121363),
        estimate=0.9737156077987459,
    ),
    # small integer counts, many ties
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "ties",
        x=[1.0, 4.0, 4.0, 1.0, 2.0, 4.0, 3.0, 5.0, 4.0, 0.0, 4.0, 0.0, 6.0, 3.0, 2.0],
        y=[1.0, 2.0, 0.0, 5.0, 3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 3.0, 4.0, 2.0, 0.0, 1.0, 4.0, 4.0,
           2.0],
        mu=0.0,
        conf_level=0.95,
        statistic=175.0,
        p_value=0.14629811232047862,
        conf_int=(-1.3097314926061954e-05, 2.000005079781235),
        estimate=0.9999614125485669,
    ),
    # 5 candidate points against 60 baseline points
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "unequal_sizes",
        x=[102.3, 102.8, 130.0, 85.6, 117.8],
        y=[107.5, 73.2, 88.4, 101.1, 122.1, 100.1, 75.1, 104.7, 82.0, 118.4, 96.2, 126.7, 98.0,
           84.6, 77.9, 94.6, 106.7, 117.8, 104.0, 88.9, 107.5, 78.4, 107.6, 88.7,
           122.4, 114.9, 105.5, 84.7, 108.3, 105.5, 91.8, 90.7, 119.1, 94.0, 106.7,
           120.9, 77.7, 126.8, 115.2, 90.3, 85.7, 81.7, 114.0, 61.4, 114.0, 102.5,
           89.7, 92.4, 94.5, 96.5, 113.4, 87.5, 116.4, 114.8, 96.2, 109.2, 91.9,
           100.8, 107.5, 129.1],
        mu=0.0,
        conf_level=0.95,
        statistic=184.5,
        p_value=0.4025338520535155,
        conf_int=(-9.000015534492547, 23.89996625118436),
        estimate=7.848540873619434,
    ),
    # candidate error ratio clearly above baseline
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "shift_up",
        x=[0.0424, 0.0501, 0.0427, 0.0418, 0.0357, 0.0429, 0.0561, 0.0492, 0.0554, 0.0475,
           0.0489, 0.0469, 0.0283, 0.0536, 0.0501, 0.05, 0.0281, 0.0276, 0.0361,
           0.0403, 0.0481, 0.0445, 0.0502, 0.0386, 0.0481, 0.0489, 0.0384, 0.0622,
           0.0506, 0.057],
        y=[0.0187, 0.0403, 0.026, 0.0261, 0.0215, 0.0188, 0.0219, 0.015, 0.008, 0.0064, 0.0038,
           0.0184, 0.0217, 0.0326, 0.0212, 0.0189, 0.0228, 0.016, -0.003, 0.0268,
           0.0114, 0.0184, 0.0134, 0.0459, 0.0278, 0.0204, 0.0045, 0.0253, 0.0069,
           0.028],
        mu=0.0,
        conf_level=0.95,
        statistic=874.5,
        p_value=3.6329979102031273e-10,
        conf_int=(0.02171633165830869, 0.030884412106769014),
        estimate=0.02664340179469844,
    ),
    # candidate latency clearly below baseline
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "shift_down",
        x=[161.2, 184.5, 205.9, 210.7, 203.6, 181.0, 186.6, 175.1, 153.9, 170.7, 198.9, 185.0,
           173.7, 159.0, 178.2, 168.4, 180.7, 189.7, 134.6, 178.2, 150.9, 161.4,
           155.3, 202.1, 193.3],
        y=[206.2, 218.5, 215.0, 222.0, 248.0, 187.1, 221.6, 217.9, 207.9, 227.1, 230.0, 291.8,
           237.5, 229.8, 251.7, 203.8, 215.0, 243.8, 217.5, 205.4, 215.6, 196.1,
           258.7, 261.7, 295.6, 222.7, 224.3, 225.1, 243.4, 230.3, 249.8, 222.3,
           194.4, 269.8, 217.6, 259.0, 221.6, 233.6, 188.4, 205.6],
        mu=0.0,
        conf_level=0.95,
        statistic=32.0,
        p_value=2.901066340057983e-10,
        conf_int=(-59.90004840119699, -37.1999862933731),
        estimate=-47.751350979717564,
    ),
    # the same sample on both sides
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "identical",
        x=[3.78, 5.38, 5.99, 4.49, 3.67, 4.93, 5.48, 6.1],
        y=[3.78, 5.38, 5.99, 4.49, 3.67, 4.93, 5.48, 6.1],
        mu=0.0,
        conf_level=0.95,
        statistic=32.0,
        p_value=1.0,
        conf_int=(-1.1499999244010732, 1.1499999244010732),
        estimate=0.0,
    ),
    # 3 against 4 points; both interval ends clamp to the range of differences
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "small_3_4",
        x=[1.2, 3.4, 2.2],
        y=[0.7, 1.9, 1.1, 0.2],
        mu=0.0,
        conf_level=0.95,
        statistic=11.0,
        p_value=0.11161176829829224,
        conf_int=(-0.7, 3.1999999999999997),
        estimate=1.3516193070705964,
    ),
    # null hypothesis of a shift of 3
    # R: wilcox.test(x, y, mu=3, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "mu_nonzero",
        x=[42.77, 51.16, 48.61, 47.6, 54.83, 50.33, 48.63, 59.01, 47.53, 43.68, 43.13, 47.37,
           53.29, 54.26],
        y=[44.57, 52.59, 41.09, 36.09, 46.42, 48.33, 47.15, 47.85, 44.74, 42.37, 41.6, 44.32,
           43.53, 50.11, 48.58, 39.17],
        mu=3.0,
        conf_level=0.95,
        statistic=130.0,
        p_value=0.4669291342028499,
        conf_int=(0.759978661076323, 7.680022009921909),
        estimate=4.149877142016891,
    ),
    # 90% interval with ties
    # R: wilcox.test(x, y, mu=0, conf.level=0.9, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "conf_90_ties",
        x=[11.0, 19.0, 20.0, 18.0, 13.0, 14.0, 14.0, 14.0, 11.0, 20.0, 17.0, 14.0, 17.0, 20.0,
           16.0, 16.0, 11.0, 14.0, 13.0, 15.0],
        y=[15.0, 12.0, 20.0, 12.0, 14.0, 15.0, 12.0, 12.0, 22.0, 14.0, 17.0, 15.0, 13.0, 17.0,
           19.0, 17.0, 16.0, 18.0, 16.0, 17.0, 15.0, 15.0],
        mu=0.0,
        conf_level=0.9,
        statistic=206.0,
        p_value=0.7321265485669279,
        conf_int=(-1.9999811245259085, 1.0000091290938258),
        estimate=-3.466324222738439e-05,
    ),
    # fully separated samples, p-value in the far tail
    # R: wilcox.test(x, y, mu=0, conf.level=0.95, conf.int=TRUE, exact=FALSE, correct=TRUE)
    RCase(
        "separated",
        x=[31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 37.0, 38.0, 39.0, 40.0, 41.0, 42.0, 43.0, 44.0,
           45.0, 46.0, 47.0, 48.0, 49.0, 50.0, 51.0, 52.0, 53.0, 54.0, 55.0, 56.0,
           57.0, 58.0, 59.0, 60.0],
        y=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
           16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0,
           28.0, 29.0, 30.0],
        mu=0.0,
        conf_level=0.95,
        statistic=900.0,
        p_value=3.0198593591621506e-11,
        conf_int=(25.00000539874687, 34.999994601253135),
        estimate=30.0,
    ),
]
# fmt: on


@pytest.mark.parametrize("case", R_CASES, ids=lambda case: case.name)
def test_wilcox_test_matches_r(case: RCase) -> None:
    result = wilcox_test(case.x, case.y, mu=case.mu, conf_level=case.conf_level)

    assert result.n_x == len(case.x)
    assert result.n_y == len(case.y)
    assert result.statistic == case.statistic
    assert result.p_value == pytest.approx(case.p_value, rel=REL, abs=ABS)
    assert result.conf_int is not None
    assert result.conf_int[0] == pytest.approx(case.conf_int[0], rel=REL, abs=ABS)
    assert result.conf_int[1] == pytest.approx(case.conf_int[1], rel=REL, abs=ABS)
    assert result.estimate == pytest.approx(case.estimate, rel=REL, abs=ABS)
    assert result.note is None


def test_swapping_samples_mirrors_the_result() -> None:
    case = next(c for c in R_CASES if c.name == "no_ties")
    forward = wilcox_test(case.x, case.y)
    backward = wilcox_test(case.y, case.x)

    assert backward.statistic == len(case.x) * len(case.y) - forward.statistic
    assert backward.p_value == pytest.approx(forward.p_value, rel=REL)
    assert forward.conf_int is not None and backward.conf_int is not None
    assert backward.conf_int[0] == pytest.approx(-forward.conf_int[1], rel=1e-3)
    assert backward.conf_int[1] == pytest.approx(-forward.conf_int[0], rel=1e-3)


# --- ties that R cannot turn into an interval ---


@pytest.mark.parametrize(
    ("x", "y", "mu"),
    [
        pytest.param([3.0, 3.0, 3.0], [3.0, 3.0], 0.0, id="all_equal"),
        pytest.param([0.0], [0.0], 0.0, id="one_each_equal"),
        pytest.param([5.0, 5.0], [3.0, 3.0, 3.0], 2.0, id="all_equal_after_mu"),
    ],
)
def test_all_tied_gives_p_one_and_no_interval(x: list[float], y: list[float], mu: float) -> None:
    # R: W as below, p-value NaN, and with conf.int=TRUE it stops with
    # "cannot compute confidence interval when all observations are tied".
    result = wilcox_test(x, y, mu=mu)

    assert result.statistic == len(x) * len(y) / 2
    assert result.p_value == 1.0
    assert result.conf_int is None
    assert result.estimate is None
    assert result.note is not None and "all observations are tied" in result.note


def test_two_constant_samples_give_a_zero_width_interval() -> None:
    # R: wilcox.test(c(2,2,2,2), c(1,1,1), exact=FALSE) -> W = 12, p-value = 0.024744672046398939;
    # with conf.int=TRUE R stops because x - d and y are all tied at d = 1.
    result = wilcox_test([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0])

    assert result.statistic == 12.0
    assert result.p_value == pytest.approx(0.024744672046398939, rel=REL)
    assert result.conf_int == (1.0, 1.0)
    assert result.estimate == 1.0
    assert result.note is not None and "both samples are constant" in result.note


# --- non-finite values and sample sizes ---


def test_nan_and_infinite_values_are_dropped() -> None:
    # R: wilcox.test(c(1.5, 2.5, 0.5), c(1, 2), conf.int=TRUE, exact=FALSE)
    #    -> W = 3, p-value = 1, conf.int = (-1.5, 1.5), estimate = 0
    nan, inf = math.nan, math.inf
    result = wilcox_test([1.5, nan, 2.5, nan, 0.5], [1.0, 2.0, inf, -inf])

    assert (result.n_x, result.n_y) == (3, 2)
    assert result.statistic == 3.0
    assert result.p_value == 1.0
    assert result.conf_int == (-1.5, 1.5)
    assert result.estimate == 0.0
    assert result.note == "dropped 2 non-finite x value(s); dropped 2 non-finite y value(s)"
    assert result == WilcoxResult(
        statistic=3.0,
        p_value=1.0,
        conf_int=(-1.5, 1.5),
        estimate=0.0,
        n_x=3,
        n_y=2,
        note=result.note,
    )
    assert wilcox_test([1.5, 2.5, 0.5], [1.0, 2.0]).note is None


@pytest.mark.parametrize(
    ("x", "y", "sample", "size", "given"),
    [
        pytest.param([], [1.0, 2.0], "x", 0, 0, id="x_empty"),
        pytest.param([1.0, 2.0], [], "y", 0, 0, id="y_empty"),
        pytest.param([math.nan, math.inf], [1.0], "x", 0, 2, id="x_only_non_finite"),
        pytest.param([1.0], [math.nan], "y", 0, 1, id="y_only_nan"),
    ],
)
def test_sample_without_finite_values_is_rejected(
    x: list[float], y: list[float], sample: str, size: int, given: int
) -> None:
    with pytest.raises(InsufficientSampleError) as info:
        wilcox_test(x, y)

    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, InvalidInput)
    assert (error.sample, error.size, error.given) == (sample, size, given)
    assert f"sample {sample!r} has 0 finite observations" in str(error)


def test_classify_names_the_candidate_or_baseline_sample() -> None:
    with pytest.raises(InsufficientSampleError, match="sample 'candidate' has 0 finite"):
        classify([], [1.0, 2.0], metric="latency_p99")
    with pytest.raises(InsufficientSampleError, match=r"'baseline'.*\(2 given, 2 non-finite"):
        classify([1.0, 2.0], [math.nan, math.nan], metric="latency_p99")


def test_one_observation_each_is_enough() -> None:
    # R: wilcox.test(1, 4, exact=FALSE) -> W = 0, p-value = 1
    result = wilcox_test([1.0], [4.0])

    assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert result.conf_int == (-3.0, -3.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"mu": math.nan}, id="mu_nan"),
        pytest.param({"mu": math.inf}, id="mu_inf"),
        pytest.param({"conf_level": 0.0}, id="conf_level_zero"),
        pytest.param({"conf_level": 1.0}, id="conf_level_one"),
        pytest.param({"conf_level": math.nan}, id="conf_level_nan"),
        pytest.param({"tol_root": 0.0}, id="tol_root_zero"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(MannWhitneyInputError):
        wilcox_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], **kwargs)


# --- classify ---

SHIFT_UP = next(c for c in R_CASES if c.name == "shift_up")
SHIFT_DOWN = next(c for c in R_CASES if c.name == "shift_down")
NO_TIES = next(c for c in R_CASES if c.name == "no_ties")


@pytest.mark.parametrize(
    ("candidate", "baseline", "min_effect", "expected", "summary"),
    [
        pytest.param(
            SHIFT_UP.x,
            SHIFT_UP.y,
            0.0,
            Classification.HIGH,
            "candidate higher than baseline",
            id="higher",
        ),
        pytest.param(
            SHIFT_DOWN.x,
            SHIFT_DOWN.y,
            0.0,
            Classification.LOW,
            "candidate lower than baseline",
            id="lower",
        ),
        pytest.param(
            NO_TIES.x,
            NO_TIES.y,
            0.0,
            Classification.PASS,
            "no significant difference from baseline",
            id="not_significant",
        ),
        pytest.param(
            SHIFT_UP.x,
            SHIFT_UP.y,
            0.025,
            Classification.PASS,
            "difference not beyond min_effect 0.025",
            id="higher_but_below_min_effect",
        ),
        pytest.param(
            SHIFT_DOWN.x,
            SHIFT_DOWN.y,
            30.0,
            Classification.LOW,
            "candidate lower than baseline",
            id="lower_beyond_min_effect",
        ),
        pytest.param(
            SHIFT_DOWN.x,
            SHIFT_DOWN.y,
            40.0,
            Classification.PASS,
            "difference not beyond min_effect 40",
            id="lower_but_below_min_effect",
        ),
        pytest.param(
            [3.0] * 5,
            [3.0] * 6,
            0.0,
            Classification.PASS,
            "no difference from baseline, all observations tied",
            id="all_tied",
        ),
        pytest.param(
            [2.0] * 30,
            [1.0] * 30,
            0.0,
            Classification.HIGH,
            "candidate higher than baseline",
            id="constant_samples_higher",
        ),
    ],
)
def test_classify(
    candidate: list[float],
    baseline: list[float],
    min_effect: float,
    expected: Classification,
    summary: str,
) -> None:
    verdict = classify(candidate, baseline, metric="m", min_effect=min_effect)

    assert verdict.classification is expected
    assert verdict.reason.startswith(f"m: {summary}")
    assert verdict.result == wilcox_test(candidate, baseline)


def test_classify_reason_reports_shift_interval_p_and_sizes() -> None:
    # shift_up case, R: W = 874.5, p = 3.63e-10, CI (0.02172, 0.03088), estimate 0.02664
    verdict = classify(SHIFT_UP.x, SHIFT_UP.y, metric="error_ratio")

    assert verdict.classification is Classification.HIGH
    assert verdict.reason == (
        "error_ratio: candidate higher than baseline "
        "(shift +0.02664, 95% CI [0.02172, 0.03088], p=3.6e-10, n=30/30)"
    )


def test_classify_alpha_is_a_strict_threshold() -> None:
    # ties case, R: p-value = 0.14629811232047862, CI lower bound just below 0
    ties = next(c for c in R_CASES if c.name == "ties")

    assert classify(ties.x, ties.y, metric="m", alpha=0.1).classification is Classification.PASS
    # no_ties case: p = 0.1379 < 0.2 but the CI (-0.548, 2.954) still straddles 0
    verdict = classify(NO_TIES.x, NO_TIES.y, metric="m", alpha=0.2)
    assert verdict.classification is Classification.PASS
    assert "not confirmed by the confidence interval" in verdict.reason


def test_classify_uses_conf_level_in_interval_and_reason() -> None:
    case = next(c for c in R_CASES if c.name == "conf_90_ties")
    verdict = classify(case.x, case.y, metric="m", conf_level=0.9)

    assert verdict.result.conf_int == pytest.approx(case.conf_int, rel=REL, abs=ABS)
    assert "90% CI" in verdict.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"alpha": 0.0}, id="alpha_zero"),
        pytest.param({"alpha": 1.5}, id="alpha_above_one"),
        pytest.param({"min_effect": -0.1}, id="min_effect_negative"),
        pytest.param({"min_effect": math.nan}, id="min_effect_nan"),
        pytest.param({"conf_level": 2.0}, id="conf_level_above_one"),
    ],
)
def test_classify_rejects_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(MannWhitneyInputError):
        classify([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], metric="m", **kwargs)


def test_classification_values() -> None:
    assert [c.value for c in Classification] == ["High", "Low", "Pass"]
    assert Classification("High") is Classification.HIGH
