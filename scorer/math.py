"""Scoring math: pure numpy, no I/O.

Every function returns ``None`` where the value is mathematically undefined
(a constant vector, an all-zero truth), so that callers never see NaN.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _pair(true: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"length mismatch: {t.size} true values, {p.size} predicted")
    return t, p


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _exponent(x: np.ndarray) -> int:
    """e such that x's largest magnitude is in [2^(e-1), 2^e) (0 for zeros, inf or NaN).

    Scaling by 2^-e only moves exponents: sums, products and their ratios come out
    exactly as before, except that values of 1e200 no longer square to inf, nor
    those of 1e-200 to zero.
    """
    return int(np.frexp(np.max(np.abs(x)))[1])


def pearson(true: ArrayLike, predicted: ArrayLike) -> float | None:
    """Pearson correlation; None when either side is constant or empty."""
    t, p = _pair(true, predicted)
    if t.size < 2 or np.all(t == t[0]) or np.all(p == p[0]):
        return None  # a constant side (tested exactly: its mean may not be exact)
    t, p = np.ldexp(t, -_exponent(t)), np.ldexp(p, -_exponent(p))  # each side scaled on its own
    dt, dp = t - t.mean(), p - p.mean()
    # Product of norms, not sqrt of a product of squares: no underflow at tiny scales.
    denom = np.linalg.norm(dt) * np.linalg.norm(dp)
    if denom == 0.0 or not np.isfinite(denom):
        return None
    return _finite_or_none(float(np.clip(np.dot(dt, dp) / denom, -1.0, 1.0)))


def pooled_correlation(
    trues: Sequence[ArrayLike], predicteds: Sequence[ArrayLike]
) -> float | None:
    """Correlation of every true value against every prediction, over all texts at once."""
    if len(trues) != len(predicteds):
        raise ValueError("as many predicted texts as true texts are needed")
    if not trues:
        return None
    pairs = [_pair(t, p) for t, p in zip(trues, predicteds)]
    return pearson(np.concatenate([t for t, _ in pairs]), np.concatenate([p for _, p in pairs]))


def rsquared(true: ArrayLike, predicted: ArrayLike) -> float | None:
    """Uncentred R^2: 1 - mean((t-p)^2) / mean(t^2); None when the truth is all zero."""
    t, p = _pair(true, predicted)
    if t.size == 0:
        return None
    # A prediction far larger than the truth can still overflow: R^2 below -1e308 is None.
    with np.errstate(over="ignore", invalid="ignore"):
        e = _exponent(t)  # both sides by the same power of two: the ratio is unchanged
        t, p = np.ldexp(t, -e), np.ldexp(p, -e)
        scale = np.mean(np.square(t))
        if scale == 0.0:
            return None
        return _finite_or_none(1.0 - np.mean(np.square(t - p)) / scale)


def absolute_dev_explained(true: ArrayLike, predicted: ArrayLike) -> float | None:
    """1 - mean(|t-p|) / mean(|t|); None when the truth is all zero."""
    t, p = _pair(true, predicted)
    if t.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # as in rsquared
        e = _exponent(t)
        t, p = np.ldexp(t, -e), np.ldexp(p, -e)
        scale = np.mean(np.abs(t))
        if scale == 0.0:
            return None
        return _finite_or_none(1.0 - np.mean(np.abs(t - p)) / scale)


# Above this, 10 x an activation up to the maximum could overflow.
_HUGE_MAX = np.finfo(np.float64).max / 16


def normalize_activations(values: ArrayLike, max_activation: float) -> list[int]:
    """floor(10 * relu(x) / max), capped at 10; all zeros when max <= 0."""
    v = np.asarray(values, dtype=np.float64)
    if not max_activation > 0:
        return [0] * v.size
    if max_activation > _HUGE_MAX:
        # Both divided by 16, exactly: 10 x a value near the float maximum stays finite.
        v, max_activation = v / 16, max_activation / 16
    # Past 10 the quotient is capped, so one that overflows to inf (a tiny maximum, a huge
    # value) is as good as any.
    with np.errstate(over="ignore"):
        scaled = np.floor(10.0 * np.maximum(v, 0.0) / max_activation)
    return [int(x) for x in np.minimum(scaled, 10)]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start + 1
        while end < values.size and ordered[end] == ordered[start]:
            end += 1
        ranks[order[start:end]] = (start + 1 + end) / 2.0  # mean of start+1 .. end
        start = end
    return ranks


def roc_auc(scores: ArrayLike, labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` for telling positive from negative labels.

    The Mann-Whitney form: the chance that a random positive outscores a random
    negative, a tie counting one half. None when either class is empty.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"length mismatch: {s.size} scores, {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        return None
    rank_sum = float(_average_ranks(s)[y].sum())
    u = rank_sum - positives * (positives + 1) / 2.0
    return _finite_or_none(u / (positives * negatives))


def balanced_accuracy(labels: Sequence[bool], predictions: Sequence[bool]) -> float | None:
    """Mean of the true-positive and true-negative rates; None when either class is empty."""
    y = np.asarray(labels, dtype=bool).ravel()
    p = np.asarray(predictions, dtype=bool).ravel()
    if y.shape != p.shape:
        raise ValueError(f"length mismatch: {y.size} labels, {p.size} predictions")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    tpr = float((p & y).sum()) / positives
    tnr = float((~p & ~y).sum()) / negatives
    return (tpr + tnr) / 2.0
