"""Statistics of a hypothesis search: pure numpy and the standard library, no scipy.

- `correlation_p_value`: the t-test of a Pearson correlation (t = r sqrt((n-2)/(1-r^2)),
  n-2 degrees of freedom). The search uses it one-sided, H1: correlation > 0, because a
  hypothesis is a claim that the neuron fires when the condition holds; a condition that
  holds when the neuron is off is not an explanation of it.
- `fisher_ci`: the Fisher-z confidence interval of a correlation, tanh(atanh(r) +- z / sqrt(n-3)).
- `holm`: Holm's step-down adjustment over every hypothesis the search tried; it lives in
  `scorer.stats` (the comparison of explanations uses it too) and is re-exported here.

The Student t CDF goes through the regularized incomplete beta function, evaluated with
its continued fraction (modified Lentz). Every function returns None where the value is
undefined (fewer than 4 answered texts, a constant side, no correlation), never NaN.
"""
from __future__ import annotations

import math

from scorer.stats import holm  # noqa: F401  (re-exported: the search's reports use it)

MIN_N = 4  # below this the t-test has < 2 degrees of freedom and Fisher's z has no variance

_CF_MAX_ITERATIONS = 400
_CF_EPSILON = 1e-15
_TINY = 1e-300


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError("x must be in [0, 1]")
    return _regularized_beta(a, b, x, 1.0 - x)


def _regularized_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with y = 1 - x given by the caller, who may know it more exactly than 1.0 - x
    (the t CDF near t = 0 has x within 1e-12 of 1, where 1.0 - x would keep few digits)."""
    if not (a > 0 and b > 0):
        raise ValueError("a and b must be positive")
    if x <= 0.0 or y >= 1.0:
        return 0.0
    if y <= 0.0 or x >= 1.0:
        return 1.0
    # The continued fraction converges fast for x < (a+1)/(a+b+2); beyond, use the symmetry
    # I_x(a, b) = 1 - I_y(b, a).
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(b, a, y, x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    f = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        # Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
        numerator = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + numerator / c
        c = c if abs(c) > _TINY else _TINY
        f *= d * c
        # Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + numerator / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        f *= step
        if abs(step - 1.0) < _CF_EPSILON:
            return f
    return f  # not converged to full precision; still accurate to far more than a p-value needs


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom."""
    if not df > 0:
        raise ValueError("df must be positive")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # P(|T| >= |t|) = I_x(df/2, 1/2) with x = df/(df+t^2); its complement t^2/(df+t^2) is
    # computed on its own so that a small |t| keeps its precision.
    x = df / (df + t * t)
    y = t * t / (df + t * t)
    if x > (df / 2.0 + 1.0) / (df / 2.0 + 2.5):
        # Near t = 0: P(|T| < |t|) = I_y(1/2, df/2) is the small, accurate quantity.
        inner = _regularized_beta(0.5, df / 2.0, y, x)
        return 0.5 + 0.5 * inner if t > 0 else 0.5 - 0.5 * inner
    tail = 0.5 * _regularized_beta(df / 2.0, 0.5, x, y)
    return 1.0 - tail if t > 0 else tail


def student_t_sf(t: float, df: float) -> float:
    """P(T > t), computed without the cancellation of 1 - cdf in the upper tail."""
    return student_t_cdf(-t, df)


def normal_ppf(p: float) -> float:
    """The standard normal quantile, by bisection on erfc (exact to double precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def correlation_p_value(
    r: float | None, n: int, alternative: str = "greater"
) -> float | None:
    """p-value of a Pearson correlation `r` over `n` pairs under H0: no correlation.

    `alternative`: "greater" (H1: correlation > 0, the search's choice), "less", or
    "two-sided". None when r is None or n < MIN_N.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"unknown alternative {alternative!r}")
    if r is None or n < MIN_N or not math.isfinite(r):
        return None
    r = max(-1.0, min(1.0, float(r)))
    df = n - 2
    if abs(r) == 1.0:
        t = math.copysign(math.inf, r)
    else:
        t = r * math.sqrt(df / ((1.0 - r) * (1.0 + r)))
    if alternative == "greater":
        return student_t_sf(t, df)
    if alternative == "less":
        return student_t_cdf(t, df)
    return min(1.0, 2.0 * student_t_sf(abs(t), df))


def fisher_ci(r: float | None, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Two-sided `level` confidence interval of a correlation, by Fisher's z; None when
    undefined (r None, n < MIN_N). A perfect correlation gives the degenerate (r, r)."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    if r is None or n < MIN_N or not math.isfinite(r):
        return None
    r = max(-1.0, min(1.0, float(r)))
    if abs(r) == 1.0:
        return (r, r)
    z = math.atanh(r)
    half = normal_ppf(0.5 + level / 2.0) / math.sqrt(n - 3)
    return (math.tanh(z - half), math.tanh(z + half))
