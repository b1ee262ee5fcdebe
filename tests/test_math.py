"""Hand-pinned edge cases of scorer/math.py.

The numbers here are worked out by hand; tests/test_math_reference.py checks the
same functions against the reference implementation (automated-interpretability).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from scorer.math import (
    absolute_dev_explained,
    normalize_activations,
    pearson,
    pooled_correlation,
    rsquared,
)

SCORES = [pearson, rsquared, absolute_dev_explained]


# --- pearson -------------------------------------------------------------------------


def test_pearson_perfect_correlation_is_one():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0, abs=1e-12)
    # Affine maps with a positive slope do not change the correlation.
    assert pearson([0, 1, 5], [10, 13, 25]) == pytest.approx(1.0, abs=1e-12)


def test_pearson_anti_correlation_is_minus_one():
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0, abs=1e-12)


def test_pearson_never_leaves_minus_one_to_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    for y in (x, -x, 3 * x + 1, -1e-3 * x):
        r = pearson(x, y)
        assert r is not None and -1.0 <= r <= 1.0


def test_pearson_hand_computed_value():
    # t - mean = [-1, 0, 1], p - mean = [-1, 2, -1] -> cov 0 -> r = 0.
    assert pearson([1, 2, 3], [0, 3, 0]) == pytest.approx(0.0, abs=1e-15)
    # t - mean = [-1, 0, 1], p - mean = [-1, -1, 2]: dot = 3, |dt|^2 = 2, |dp|^2 = 6.
    assert pearson([1, 2, 3], [0, 0, 3]) == pytest.approx(3 / math.sqrt(12), abs=1e-12)


def test_pearson_negative_activations():
    # GELU-like negative resting values are ordinary numbers for the correlation.
    t = [-0.17, -0.05, 2.0, -0.1]
    assert pearson(t, t) == pytest.approx(1.0, abs=1e-12)
    assert pearson(t, [-x for x in t]) == pytest.approx(-1.0, abs=1e-12)
    # Shifting everything below zero changes nothing.
    assert pearson([-3, -2, -1], [-30, -20, -10]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "true, predicted",
    [
        ([1, 1, 1], [1, 2, 3]),  # constant truth
        ([1, 2, 3], [5, 5, 5]),  # constant prediction
        ([0, 0, 0], [0, 0, 0]),  # both constant
        ([0.0] * 64, list(range(64))),  # an all-zero (non-firing) text
    ],
)
def test_pearson_constant_vector_is_none_not_nan(true, predicted):
    assert pearson(true, predicted) is None


def test_pearson_one_token_is_none():
    assert pearson([3.0], [1.0]) is None
    assert pearson([0.0], [0.0]) is None


def test_pearson_empty_is_none():
    assert pearson([], []) is None


# Non-finite input makes numpy warn inside scorer/math.py; the result is what matters.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pearson_non_finite_input_is_none():
    assert pearson([1, 2, float("inf")], [1, 2, 3]) is None
    assert pearson([1, 2, float("nan")], [1, 2, 3]) is None


# Squares of 1e200 overflowed (and of 1e-200 flushed to zero): the norms came out inf or 0
# and the correlation None, with a RuntimeWarning, where it is defined.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("t_scale", [1.0, 1e-200, 1e200, 1e307])
@pytest.mark.parametrize("p_scale", [1.0, 1e-200, 1e200])
def test_pearson_of_extreme_scales_is_the_correlation(t_scale, p_scale):
    t, p = np.array([1.0, 2.0, 0.0, 3.5]), np.array([1.0, 3.0, 1.0, 2.0])
    assert pearson(t * t_scale, p * p_scale) == pytest.approx(pearson(t, p), abs=1e-12)


def test_pearson_returns_python_float():
    r = pearson(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0]))
    assert type(r) is float


# --- rsquared (uncentred) -------------------------------------------------------------


def test_rsquared_perfect_prediction_is_one():
    assert rsquared([0, 1, 5, 2], [0, 1, 5, 2]) == 1.0


def test_rsquared_is_uncentred():
    # 1 - mean((t-p)^2) / mean(t^2), NOT / var(t).
    # t = [1, 2, 3], p = [2, 2, 2]: mean((t-p)^2) = 2/3, mean(t^2) = 14/3 -> 1 - 1/7.
    assert rsquared([1, 2, 3], [2, 2, 2]) == pytest.approx(6 / 7, abs=1e-12)
    # The centred R^2 would be 1 - (2/3)/(2/3) = 0 here.


def test_rsquared_all_zero_prediction_is_zero():
    assert rsquared([1, -2, 3], [0, 0, 0]) == pytest.approx(0.0, abs=1e-15)


def test_rsquared_can_be_negative():
    # t = [1, 1], p = [3, 3]: mean((t-p)^2) = 4, mean(t^2) = 1 -> -3.
    assert rsquared([1, 1], [3, 3]) == pytest.approx(-3.0, abs=1e-12)


def test_rsquared_constant_truth_is_defined():
    # Unlike the correlation, a constant non-zero truth is fine for the uncentred R^2.
    assert rsquared([2, 2], [2, 2]) == 1.0


def test_rsquared_one_token_is_defined():
    assert rsquared([2.0], [1.0]) == pytest.approx(0.75, abs=1e-15)


def test_rsquared_negative_activations():
    # t = [-1, -2], p = [-1, 0]: mean((t-p)^2) = 2, mean(t^2) = 2.5 -> 0.2.
    assert rsquared([-1, -2], [-1, 0]) == pytest.approx(0.2, abs=1e-12)


@pytest.mark.parametrize("predicted", [[0, 0, 0], [0, 1, 0], [-1, 2, 3]])
def test_rsquared_all_zero_truth_is_none(predicted):
    assert rsquared([0, 0, 0], predicted) is None


def test_rsquared_empty_is_none():
    assert rsquared([], []) is None


# --- absolute_dev_explained -----------------------------------------------------------


def test_absolute_dev_explained_hand_computed():
    # t = [1, 2, 3], p = [2, 2, 2]: mean|t-p| = 2/3, mean|t| = 2 -> 1 - 1/3.
    assert absolute_dev_explained([1, 2, 3], [2, 2, 2]) == pytest.approx(2 / 3, abs=1e-12)
    assert absolute_dev_explained([1, 2, 3], [1, 2, 3]) == 1.0
    assert absolute_dev_explained([1, 2, 3], [0, 0, 0]) == pytest.approx(0.0, abs=1e-15)


def test_absolute_dev_explained_negative_activations():
    # t = [-2, 2], p = [0, 0]: mean|t-p| = 2, mean|t| = 2 -> 0.
    assert absolute_dev_explained([-2, 2], [0, 0]) == pytest.approx(0.0, abs=1e-15)
    # t = [-2, 2], p = [-1, 1]: mean|t-p| = 1, mean|t| = 2 -> 0.5.
    assert absolute_dev_explained([-2, 2], [-1, 1]) == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("predicted", [[0, 0], [0, 4], [-1, -1]])
def test_absolute_dev_explained_all_zero_truth_is_none(predicted):
    assert absolute_dev_explained([0, 0], predicted) is None


def test_absolute_dev_explained_empty_is_none():
    assert absolute_dev_explained([], []) is None


# Activations far from 1 are still numbers: 1e200 squared overflowed to inf and 1e-200
# squared to zero, so R^2 came out None (undefined) where it is defined.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("score", [rsquared, absolute_dev_explained])
@pytest.mark.parametrize("scale", [1e-200, 1e200, 1e307])
def test_scores_of_extreme_scales_equal_those_of_ordinary_ones(score, scale):
    t, p = np.array([1.0, 2.0, 3.0, 0.5]), np.array([1.5, 2.0, 2.0, 0.0])
    assert score(t * scale, p * scale) == pytest.approx(score(t, p), abs=1e-12)
    assert score([3.0 * scale], [0.0]) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_absolute_dev_explained_when_the_sum_of_the_truth_overflows():
    assert absolute_dev_explained([1e308, 1.5e308], [0.0, 0.0]) == pytest.approx(0.0, abs=1e-15)
    assert absolute_dev_explained([1e308, 1.5e308], [1e308, 1.5e308]) == 1.0


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("score", [rsquared, absolute_dev_explained])
def test_a_score_too_negative_for_a_float_is_none_without_warnings(score):
    # R^2 = 1 - 1e602: defined, but not a float. abs-dev (1 - 1e301) still is one.
    if score is rsquared:
        assert score([1e-300], [10.0]) is None
    else:
        assert score([1e-300], [10.0]) == pytest.approx(-1e301, rel=1e-12)


# --- shared behaviour -----------------------------------------------------------------


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("true, predicted", [([1, 2, 3], [1, 2]), ([1], [1, 2]), ([1, 2, 3], [2])])
def test_length_mismatch_raises(score, true, predicted):
    # Including a length-1 prediction, which numpy would otherwise broadcast silently.
    with pytest.raises(ValueError, match="length mismatch"):
        score(true, predicted)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # from the infinite input
@pytest.mark.parametrize("score", SCORES)
def test_scores_never_nan(score):
    rng = np.random.default_rng(1)
    cases = [
        ([], []),
        ([0.0], [0.0]),
        ([0.0] * 5, [0.0] * 5),
        ([0.0] * 5, list(range(5))),
        ([7.0] * 5, [7.0] * 5),
        ([float("inf"), 1.0], [1.0, 1.0]),
        (list(rng.normal(size=5)), list(rng.normal(size=5))),
    ]
    for true, predicted in cases:
        value = score(true, predicted)
        assert value is None or (type(value) is float and math.isfinite(value)), (
            true,
            predicted,
            value,
        )


@pytest.mark.parametrize("score", SCORES)
def test_accepts_lists_and_arrays_alike(score):
    t, p = [0.0, 1.0, 4.0, 2.0], [0.5, 1.0, 3.0, 2.5]
    assert score(t, p) == score(np.array(t), np.array(p))
    assert score(t, p) == score(tuple(t), tuple(p))


# --- pooled_correlation ---------------------------------------------------------------


def test_pooled_differs_from_mean_of_per_text():
    # Each text on its own is perfectly correlated, but the second text's predictions
    # are offset by 10: the mean of per-text correlations is 1.0, while the pooled
    # correlation (what the service reports, as the reference does) penalises it.
    trues = [[0, 1], [0, 1]]
    predicteds = [[0, 1], [10, 11]]
    per_text = [pearson(t, p) for t, p in zip(trues, predicteds)]
    assert per_text == [pytest.approx(1.0), pytest.approx(1.0)]
    # Pooled: dt = [-.5, .5, -.5, .5], dp = [-5.5, -4.5, 4.5, 5.5]
    # -> dot = 1, |dt|^2 = 1, |dp|^2 = 101 -> r = 1/sqrt(101).
    pooled = pooled_correlation(trues, predicteds)
    assert pooled == pytest.approx(1 / math.sqrt(101), abs=1e-12)
    assert pooled != pytest.approx(float(np.mean(per_text)))


def test_pooled_equals_pearson_of_concatenation():
    trues = [[0, 3, 1], [2], [0, 0, 5, 1]]
    predicteds = [[1, 2, 1], [2], [0, 1, 4, 0]]
    expected = pearson([0, 3, 1, 2, 0, 0, 5, 1], [1, 2, 1, 2, 0, 1, 4, 0])
    assert pooled_correlation(trues, predicteds) == pytest.approx(expected, abs=1e-15)


def test_pooled_defined_when_a_single_text_is_not():
    # The first text is constant (its own correlation is None) and the second has one
    # token, yet together they vary.
    trues = [[0, 0], [4]]
    predicteds = [[1, 1], [3]]
    assert pearson(*[trues[0], predicteds[0]]) is None
    assert pearson(trues[1], predicteds[1]) is None
    assert pooled_correlation(trues, predicteds) == pytest.approx(1.0, abs=1e-12)


def test_pooled_constant_overall_is_none():
    assert pooled_correlation([[0, 0], [0]], [[1, 2], [3]]) is None


def test_pooled_no_texts_is_none():
    assert pooled_correlation([], []) is None


def test_pooled_text_count_mismatch_raises():
    with pytest.raises(ValueError):
        pooled_correlation([[1, 2], [3, 4]], [[1, 2]])


def test_pooled_total_length_mismatch_raises():
    with pytest.raises(ValueError):
        pooled_correlation([[1, 2], [3, 4]], [[1, 2], [3]])


# --- normalize_activations ------------------------------------------------------------


def test_normalize_floor():
    # floor(10 * x / max), not round: 0.19 -> 1, 0.99 -> 9.
    assert normalize_activations([0.0, 0.19, 0.5, 0.99, 1.0], 1.0) == [0, 1, 5, 9, 10]
    assert normalize_activations([0.049, 0.05, 2.0], 2.0) == [0, 0, 10]


def test_normalize_caps_at_ten():
    assert normalize_activations([5.0, 10.0, 11.0, 1e6], 5.0) == [10, 10, 10, 10]


def test_normalize_relu():
    assert normalize_activations([-1.0, -1e-9, -0.0, 0.0, 3.0], 3.0) == [0, 0, 0, 0, 10]


@pytest.mark.parametrize("max_activation", [0.0, -0.0, -1.0, float("-inf"), float("nan")])
def test_normalize_non_positive_max_gives_zeros(max_activation):
    assert normalize_activations([1.0, -1.0, 5.0], max_activation) == [0, 0, 0]


def test_normalize_returns_python_ints():
    out = normalize_activations(np.array([0.3, 2.0, 7.5]), 7.5)
    assert out == [0, 2, 10]
    assert all(type(x) is int for x in out)


def test_normalize_empty():
    assert normalize_activations([], 1.0) == []
    assert normalize_activations([], 0.0) == []


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_normalize_near_the_float_maximum():
    # 10 x 5e307 overflows to inf; the quotient 5e307 / 1e308 x 10 is 5.
    assert normalize_activations([5e307, 1e308, 1.7e308, -1e308, 1e-300], 1e308) == [5, 10, 10, 0, 0]


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_normalize_by_a_tiny_max_caps_without_warnings():
    # 10 / 1e-320 overflows to inf: capped at 10 like any quotient past it.
    assert normalize_activations([1.0, 1e308, 0.0], 1e-320) == [10, 10, 0]


def test_pooled_correlation_checks_each_text_length():
    with pytest.raises(ValueError):
        pooled_correlation([[1.0, 2.0], [3.0]], [[1.0], [2.0, 3.0]])


def test_a_constant_whose_mean_is_inexact_is_still_undefined():
    assert pearson([1.0, 2.0] * 25, [0.09999999999999998] * 50) is None
