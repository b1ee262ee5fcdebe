"""The search's statistics (explainer/search/stats.py): closed forms, table values, scipy where installed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from explainer.search.stats import (
    correlation_p_value,
    fisher_ci,
    normal_ppf,
    regularized_beta,
    student_t_cdf,
    student_t_sf,
)


@pytest.mark.parametrize("x", [0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0])
def test_regularized_beta_closed_forms(x):
    assert regularized_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
    assert regularized_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-13)
    assert regularized_beta(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-13)
    # I_x(a, b) + I_{1-x}(b, a) = 1
    assert regularized_beta(2.2, 7.1, x) + regularized_beta(7.1, 2.2, 1 - x) == pytest.approx(1.0, abs=1e-13)


def test_regularized_beta_is_one_half_at_the_middle_of_a_symmetric_beta():
    for a in (0.5, 1, 3, 40, 500):
        assert regularized_beta(a, a, 0.5) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 1.5, 12.0])
def test_t_cdf_with_one_and_two_degrees_of_freedom_matches_the_closed_forms(t):
    cauchy = 0.5 + math.atan(t) / math.pi
    two = 0.5 + t / (2 * math.sqrt(2 + t * t))
    assert student_t_cdf(t, 1) == pytest.approx(cauchy, abs=1e-13)
    assert student_t_cdf(t, 2) == pytest.approx(two, abs=1e-13)


@pytest.mark.parametrize(
    "df, quantile, p",
    [
        # Two-sided 95% and one-sided 95% critical values of the t table.
        (5, 2.570581835636314, 0.975),
        (10, 2.228138851986274, 0.975),
        (20, 1.724718242920787, 0.95),
        (30, 2.042272456301238, 0.975),
        (1, 12.70620473617471, 0.975),
    ],
)
def test_t_cdf_at_table_quantiles(df, quantile, p):
    assert student_t_cdf(quantile, df) == pytest.approx(p, abs=1e-12)
    assert student_t_sf(quantile, df) == pytest.approx(1 - p, abs=1e-12)


def test_t_cdf_tends_to_the_normal_and_handles_infinity():
    assert student_t_cdf(1.959963984540054, 1e7) == pytest.approx(0.975, abs=1e-6)
    assert student_t_cdf(math.inf, 3) == 1.0 and student_t_cdf(-math.inf, 3) == 0.0
    assert student_t_cdf(0.0, 7) == pytest.approx(0.5, abs=1e-15)


def test_t_upper_tail_keeps_its_precision_far_out():
    # 1 - cdf would round to 0; the survival function must not.
    tail = student_t_sf(40.0, 18)
    assert 0 < tail < 1e-18


def test_against_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(6)
    for _ in range(3000):
        df = float(rng.choice([1, 2, 3, 4, 7, 18, 50, 198, 1000]))
        t = float(rng.normal() * rng.choice([0.2, 1.0, 4.0, 30.0]))
        expected = stats.t.cdf(t, df)
        got = student_t_cdf(t, df)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-14)
        a, b, x = (float(v) for v in rng.uniform([0.05, 0.05, 0.0], [150, 150, 1.0]))
        assert regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9, abs=1e-13)
    for n in (4, 6, 20, 57):
        x = rng.normal(size=n)
        y = (x + rng.normal(size=n) > 0).astype(float)
        r = float(np.corrcoef(x, y)[0, 1])
        for alternative in ("greater", "less", "two-sided"):
            expected = stats.pearsonr(x, y, alternative=alternative).pvalue
            assert correlation_p_value(r, n, alternative) == pytest.approx(expected, rel=1e-8)


def test_normal_quantiles():
    assert normal_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-12)
    assert normal_ppf(0.5) == pytest.approx(0.0, abs=1e-12)
    assert normal_ppf(0.05) == pytest.approx(-1.6448536269514722, abs=1e-12)


def test_correlation_p_value_by_hand():
    # r = 0.5 over 20 pairs: t = 0.5 * sqrt(18 / 0.75) = sqrt(6), 18 degrees of freedom.
    t = math.sqrt(6)
    one_sided = student_t_sf(t, 18)
    assert correlation_p_value(0.5, 20) == pytest.approx(one_sided, rel=1e-12)
    assert correlation_p_value(0.5, 20, "two-sided") == pytest.approx(2 * one_sided, rel=1e-12)
    assert correlation_p_value(-0.5, 20) == pytest.approx(1 - one_sided, rel=1e-12)
    assert 0.012 < one_sided < 0.013


def test_correlation_p_value_edges():
    assert correlation_p_value(None, 30) is None  # constant answers: no correlation
    assert correlation_p_value(0.9, 3) is None  # n < 4
    assert correlation_p_value(1.0, 10) == 0.0
    assert correlation_p_value(-1.0, 10) == 1.0
    assert correlation_p_value(-1.0, 10, "two-sided") == 0.0
    assert correlation_p_value(0.0, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        correlation_p_value(0.3, 10, "sideways")


def test_fisher_interval_by_hand():
    # r = 0.5, n = 28: z = atanh(0.5), standard error 1/5.
    z = math.atanh(0.5)
    low, high = fisher_ci(0.5, 28)
    assert low == pytest.approx(math.tanh(z - 1.959963984540054 / 5), abs=1e-12)
    assert high == pytest.approx(math.tanh(z + 1.959963984540054 / 5), abs=1e-12)
    assert low == pytest.approx(0.1560, abs=1e-4) and high == pytest.approx(0.7358, abs=1e-4)
    low99, high99 = fisher_ci(0.5, 28, level=0.99)
    assert low99 < low and high99 > high


def test_fisher_interval_edges():
    assert fisher_ci(None, 30) is None
    assert fisher_ci(0.4, 3) is None
    assert fisher_ci(1.0, 10) == (1.0, 1.0)
    low, high = fisher_ci(-0.2, 4)  # one degree of freedom left for z: wide but defined
    assert -1 < low < -0.2 < high < 1
