"""How sure a score is: bootstrap intervals over texts, paired comparisons, Holm's correction.

Pure numpy, no I/O. The unit of resampling is the *text*, never the token: the tokens of
one text share a context, so they are not independent draws, and a token-level bootstrap
would give intervals that are far too narrow.

Every statistic here is computed from per-text *sufficient statistics*: a (texts, k) array
of sums whose totals over any multiset of texts determine the score. A bootstrap resample
is then a row of counts (how many times each text was drawn), and the totals of every
resample at once are one matrix product, counts (B, T) @ sums (T, k). The pooled Pearson
correlation of `scorer.math.pooled_correlation` needs n, Σx, Σy, Σx², Σy², Σxy; balanced
accuracy needs four counts; the ROC-AUC needs a pairwise matrix (see `auc_interval`).
Anything else can pass a vectorised callable over the resample index matrix
(`bootstrap_indices`).

Resamples are drawn from `numpy.random.default_rng(seed)`: the same seed and inputs give
the same interval, bit for bit. A resample on which the statistic is undefined (every
drawn prediction constant, one class missing) is left out and counted; an interval is
never built from NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from scorer import math as score_math

ArrayLike = Sequence[float] | np.ndarray

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05
METHOD = "percentile bootstrap over texts"
MIN_TEXTS = 2


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A two-sided bootstrap interval. `undefined_resamples` of `resamples` were left out."""

    low: float
    high: float
    level: float
    method: str
    resamples: int
    undefined_resamples: int = 0
    seed: int = DEFAULT_SEED

    def to_dict(self) -> dict:
        return {
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "method": self.method,
            "resamples": self.resamples,
            "undefined_resamples": self.undefined_resamples,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class NoInterval:
    """Why no interval could be computed (too few texts, an undefined score everywhere)."""

    reason: str

    def __bool__(self) -> bool:  # `if interval:` reads naturally at the call site
        return False

    def to_dict(self) -> None:
        return None


IntervalResult = Interval | NoInterval


def interval_fields(result: IntervalResult, key: str = "score_interval") -> dict:
    """The response keys for an interval: `{key: {...}}`, or `{key: None, key_reason: why}`."""
    if isinstance(result, Interval):
        return {key: result.to_dict()}
    return {key: None, f"{key}_reason": result.reason}


# -- resamples -------------------------------------------------------------------------------


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")


def resample_indices(n_items: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, n_items) indices drawn with replacement: one bootstrap resample per row."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(resamples, n_items))


def counts_from_indices(indices: np.ndarray, n_items: int) -> np.ndarray:
    """(resamples, n_items) counts: how often each item was drawn in each resample."""
    b = indices.shape[0]
    flat = (indices + n_items * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_items).reshape(b, n_items)


def resample_counts(n_items: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    return counts_from_indices(resample_indices(n_items, resamples, seed), n_items)


def percentile_interval(
    values: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    method: str = METHOD,
) -> IntervalResult:
    """The percentile interval of bootstrap `values` (NaN marks an undefined resample)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return NoInterval("the score is undefined on every resample of the texts")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return Interval(
        low=float(low),
        high=float(high),
        level=level,
        method=method,
        resamples=int(values.size),
        undefined_resamples=int(values.size - defined.size),
        seed=seed,
    )


def bootstrap_sums(
    sums: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> IntervalResult:
    """Interval of a statistic of per-text sums.

    `sums` is (texts, k); `statistic` maps totals (B, k) to B values, NaN where undefined.
    """
    _check(resamples, level)
    sums = np.asarray(sums, dtype=np.float64)
    if sums.ndim != 2:
        raise ValueError("sums must be a (texts, k) array")
    if sums.shape[0] < MIN_TEXTS:
        return NoInterval(f"an interval needs at least {MIN_TEXTS} scored texts; {sums.shape[0]} given")
    counts = resample_counts(sums.shape[0], resamples, seed)
    return percentile_interval(statistic(counts @ sums), level=level, seed=seed)


def bootstrap_indices(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> IntervalResult:
    """Interval of any statistic of a resample, given as a vectorised callable.

    `statistic(indices)` gets the (B, n_items) index matrix and returns B values, NaN
    where undefined. The generic form, for a score with no small sufficient statistic.
    """
    _check(resamples, level)
    if n_items < MIN_TEXTS:
        return NoInterval(f"an interval needs at least {MIN_TEXTS} scored texts; {n_items} given")
    values = statistic(resample_indices(n_items, resamples, seed))
    return percentile_interval(values, level=level, seed=seed)


# -- the pooled correlation ------------------------------------------------------------------

# Columns of the correlation's per-text sums.
_N, _SX, _SY, _SXX, _SYY, _SXY = range(6)


@dataclass(frozen=True)
class CorrelationSums:
    """Per-text sums of the pooled correlation of x (predicted) with y (true).

    The values are centred on the pooled means and divided by the pooled standard
    deviations before summing, so the totals of any resample stay well-conditioned; the
    correlation does not change under these affine maps. `lo`/`hi` hold each text's
    smallest and largest x and y, to tell an exactly constant resample (undefined, as in
    `scorer.math.pearson`) from a nearly constant one.
    """

    sums: np.ndarray  # (T, 6): n, Σx, Σy, Σx², Σy², Σxy
    x_lo: np.ndarray
    x_hi: np.ndarray
    y_lo: np.ndarray
    y_hi: np.ndarray


def correlation_sums(trues: Sequence[ArrayLike], predicteds: Sequence[ArrayLike]) -> CorrelationSums:
    if len(trues) != len(predicteds):
        raise ValueError("as many predicted texts as true texts are needed")
    ys = [np.asarray(t, dtype=np.float64).ravel() for t in trues]
    xs = [np.asarray(p, dtype=np.float64).ravel() for p in predicteds]
    for i, (x, y) in enumerate(zip(xs, ys)):
        if x.shape != y.shape:
            raise ValueError(f"text {i}: {y.size} true values, {x.size} predicted")
        if x.size == 0:
            raise ValueError(f"text {i} is empty")
    if not xs:
        empty = np.zeros(0)
        return CorrelationSums(np.zeros((0, 6)), empty, empty, empty, empty)
    all_x, all_y = np.concatenate(xs), np.concatenate(ys)
    # Each side by a power of two first (exact), as scorer.math.pearson does: values of 1e200
    # do not overflow the moments, nor do those of 1e-200 underflow them.
    x_shift, y_shift = -_exponent(all_x), -_exponent(all_y)
    all_x, all_y = np.ldexp(all_x, x_shift), np.ldexp(all_y, y_shift)
    x_scale = np.std(all_x) or 1.0
    y_scale = np.std(all_y) or 1.0
    x_mean, y_mean = np.mean(all_x), np.mean(all_y)
    rows = []
    for x, y in zip(xs, ys):
        cx = (np.ldexp(x, x_shift) - x_mean) / x_scale
        cy = (np.ldexp(y, y_shift) - y_mean) / y_scale
        rows.append([x.size, cx.sum(), cy.sum(), cx @ cx, cy @ cy, cx @ cy])
    return CorrelationSums(
        sums=np.asarray(rows, dtype=np.float64),
        x_lo=np.array([x.min() for x in xs]),
        x_hi=np.array([x.max() for x in xs]),
        y_lo=np.array([y.min() for y in ys]),
        y_hi=np.array([y.max() for y in ys]),
    )


def _exponent(x: np.ndarray) -> int:
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    return int(np.frexp(largest)[1]) if np.isfinite(largest) else 0


def _constant(counts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per resample: is every drawn value the same? Exact, from each text's min and max."""
    drawn = counts > 0
    return np.where(drawn, hi, -np.inf).max(axis=1) == np.where(drawn, lo, np.inf).min(axis=1)


def correlation_from_totals(totals: np.ndarray) -> np.ndarray:
    """Pooled Pearson correlation from totals (B, 6); NaN where a side has no variance."""
    n = totals[:, _N]
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = totals[:, _SXX] - totals[:, _SX] ** 2 / n
        syy = totals[:, _SYY] - totals[:, _SY] ** 2 / n
        sxy = totals[:, _SXY] - totals[:, _SX] * totals[:, _SY] / n
        r = sxy / np.sqrt(sxx * syy)
    r = np.where((sxx > 0) & (syy > 0) & (n >= 2), r, np.nan)
    return np.clip(r, -1.0, 1.0)


def resampled_correlations(data: CorrelationSums, counts: np.ndarray) -> np.ndarray:
    """The pooled correlation of every resample (rows of `counts`), NaN where undefined."""
    r = correlation_from_totals(counts @ data.sums)
    degenerate = _constant(counts, data.x_lo, data.x_hi) | _constant(counts, data.y_lo, data.y_hi)
    return np.where(degenerate, np.nan, r)


def bootstrap_interval(
    trues: Sequence[ArrayLike],
    predicteds: Sequence[ArrayLike],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> IntervalResult:
    """Bootstrap interval of the pooled correlation (the simulation score) over whole texts.

    `trues[i]`, `predicteds[i]`: the true and simulated activations of scored text i
    (failed texts left out by the caller, as the score leaves them out).
    """
    _check(resamples, level)
    if len(trues) < MIN_TEXTS:
        return NoInterval(f"an interval needs at least {MIN_TEXTS} scored texts; {len(trues)} given")
    data = correlation_sums(trues, predicteds)
    counts = resample_counts(len(trues), resamples, seed)
    return percentile_interval(resampled_correlations(data, counts), level=level, seed=seed)


# -- classifier scores: balanced accuracy and ROC-AUC -----------------------------------------


def balanced_accuracy_sums(labels: Sequence[bool], predictions: Sequence[bool]) -> np.ndarray:
    """Per item: [true positive, positive, true negative, negative] as 0/1 columns."""
    y = np.asarray(labels, dtype=bool).ravel()
    p = np.asarray(predictions, dtype=bool).ravel()
    if y.shape != p.shape:
        raise ValueError(f"length mismatch: {y.size} labels, {p.size} predictions")
    return np.column_stack([y & p, y, ~y & ~p, ~y]).astype(np.float64)


def balanced_accuracy_from_totals(totals: np.ndarray) -> np.ndarray:
    tp, pos, tn, neg = totals.T
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (tp / pos + tn / neg) / 2.0
    return np.where((pos > 0) & (neg > 0), value, np.nan)


def balanced_accuracy_interval(
    labels: Sequence[bool],
    predictions: Sequence[bool],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> IntervalResult:
    """Interval of the balanced accuracy of a judge's yes/no answers, one item per text
    (detection, fuzzing: the answered texts only, as the score counts them)."""
    sums = balanced_accuracy_sums(labels, predictions)
    return bootstrap_sums(sums, balanced_accuracy_from_totals, resamples=resamples, level=level, seed=seed)


def auc_pairs(scores: ArrayLike, labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC-AUC's pieces: W[i, j] = 1 (0.5 on a tie) when i is positive, j negative and
    i scores above j; and the positive and negative indicators."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"length mismatch: {s.size} scores, {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    wins = above * (y[:, None] & ~y[None, :])
    return wins, y.astype(np.float64), (~y).astype(np.float64)


def resampled_auc(wins: np.ndarray, pos: np.ndarray, neg: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of every resample: Σ c_i c_j W_ij / (P N), NaN when a class is missing."""
    numerator = np.einsum("bi,ij,bj->b", counts, wins, counts, optimize=True)
    denominator = (counts @ pos) * (counts @ neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def auc_interval(
    scores: ArrayLike,
    labels: Sequence[bool],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> IntervalResult:
    """Interval of the ROC-AUC of per-text similarities (the embedding scorer)."""
    wins, pos, neg = auc_pairs(scores, labels)
    n = pos.size

    def statistic(indices: np.ndarray) -> np.ndarray:
        return resampled_auc(wins, pos, neg, counts_from_indices(indices, n).astype(np.float64))

    return bootstrap_indices(statistic, n, resamples=resamples, level=level, seed=seed)


# -- Holm ------------------------------------------------------------------------------------


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order.

    Every entry counts as one test, including a None (a test whose p-value is undefined):
    it is ranked as p = 1, which is conservative, and its adjusted value stays None. Ties
    get equal adjusted values; the adjusted values are monotone in the raw ones and capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (1.0 if p_values[i] is None else p_values[i], i))
    adjusted: list[float | None] = [None] * m
    running = 0.0
    for rank, i in enumerate(order):
        p = p_values[i]
        step = min(1.0, (m - rank) * (1.0 if p is None else float(p)))
        running = max(running, step)
        if p is not None:
            adjusted[i] = running
    return adjusted


# -- comparing explanations on the same texts --------------------------------------------------


@dataclass(frozen=True)
class PairComparison:
    a: int  # explanation indices, as given
    b: int
    difference: float | None  # score(a) - score(b), None when either is undefined
    interval: IntervalResult
    p_value: float | None  # two-sided, H0: the two scores are equal
    p_adjusted: float | None = None  # Holm over every pair
    defined_resamples: int = 0

    def to_dict(self, alpha: float = DEFAULT_ALPHA) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "interval": self.interval.to_dict(),
            **({} if self.interval else {"interval_reason": self.interval.reason}),
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "significant": self.p_adjusted is not None and self.p_adjusted <= alpha,
            "defined_resamples": self.defined_resamples,
        }


@dataclass(frozen=True)
class Comparison:
    scores: list[float | None]  # each explanation's score on the texts compared
    intervals: list[IntervalResult]  # each explanation's own interval, same resamples
    pairs: list[PairComparison]
    ranking: list[dict]  # best first: {"index", "score", "rank"}; equal rank: not told apart
    texts: list[int]  # the texts every explanation was scored on (indices as given)
    alpha: float = DEFAULT_ALPHA
    correction: str = "holm"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "scores": self.scores,
            "intervals": [iv.to_dict() for iv in self.intervals],
            "pairs": [p.to_dict(self.alpha) for p in self.pairs],
            "ranking": self.ranking,
            "texts": self.texts,
            "alpha": self.alpha,
            "correction": self.correction,
            "method": "paired " + METHOD,
            "notes": self.notes,
        }


def two_sided_p(differences: np.ndarray) -> float | None:
    """2 x the smaller share of resampled differences on either side of 0, each share with
    the +1 correction ((k + 1) / (m + 1)) so that no bootstrap p-value is 0; capped at 1."""
    d = differences[np.isfinite(differences)]
    m = d.size
    if m == 0:
        return None
    below = (np.count_nonzero(d <= 0) + 1) / (m + 1)
    above = (np.count_nonzero(d >= 0) + 1) / (m + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def compare_resampled(
    points: Sequence[float | None],
    resampled: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
    unavailable: str | None = None,
) -> tuple[list[IntervalResult], list[PairComparison], list[dict]]:
    """Pairs, intervals and ranking from point scores and the (B, k) resampled scores of k
    explanations on the SAME resamples (row b of every column drew the same texts).

    `unavailable`: why there are no resamples at all (too few texts); then no interval and
    no p-value, and since nothing tells the explanations apart they share one rank.
    """
    k = len(points)
    if unavailable is not None:
        intervals: list[IntervalResult] = [NoInterval(unavailable)] * k
    else:
        intervals = [percentile_interval(resampled[:, j], level=level, seed=seed) for j in range(k)]
    raw: list[PairComparison] = []
    for a in range(k):
        for b in range(a + 1, k):
            d = resampled[:, a] - resampled[:, b]
            defined = int(np.count_nonzero(np.isfinite(d)))
            point = None if points[a] is None or points[b] is None else float(points[a] - points[b])
            if unavailable is not None:
                interval: IntervalResult = NoInterval(unavailable)
                p = None
            elif point is None:
                interval = NoInterval("a score of the pair is undefined")
                p = None
            else:
                interval = percentile_interval(
                    d, level=level, seed=seed, method="paired " + METHOD
                )
                p = two_sided_p(d)
            raw.append(PairComparison(a, b, point, interval, p, None, defined))
    adjusted = holm([p.p_value for p in raw])
    pairs = [
        PairComparison(p.a, p.b, p.difference, p.interval, p.p_value, adj, p.defined_resamples)
        for p, adj in zip(raw, adjusted)
    ]
    return intervals, pairs, rank_explanations(points, pairs, alpha)


def rank_explanations(
    points: Sequence[float | None], pairs: Sequence[PairComparison], alpha: float = DEFAULT_ALPHA
) -> list[dict]:
    """Best first, in groups: a group starts at its best explanation and takes each next one
    (by score) that the best is not significantly better than (Holm-adjusted p > alpha); the
    first that it is significantly better than starts the next group. Members of a group
    share its `rank`. An undefined score comes last, with rank None."""
    adjusted = {}
    for p in pairs:
        adjusted[(p.a, p.b)] = adjusted[(p.b, p.a)] = p.p_adjusted
    defined = sorted((i for i, s in enumerate(points) if s is not None), key=lambda i: (-points[i], i))
    ranking: list[dict] = []
    rank, leader = 0, None
    for i in defined:
        distinct = leader is None or (
            adjusted.get((leader, i)) is not None and adjusted[(leader, i)] <= alpha
        )
        if distinct:
            rank += 1
            leader = i
        ranking.append({"index": i, "score": points[i], "rank": rank})
    ranking += [{"index": i, "score": None, "rank": None} for i, s in enumerate(points) if s is None]
    return ranking


def paired_bootstrap(
    trues: Sequence[ArrayLike | None],
    predicteds_by_explanation: Sequence[Sequence[ArrayLike | None]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare k explanations' pooled correlations on the same texts.

    `trues[i]` is text i's true activations; `predicteds_by_explanation[e][i]` explanation
    e's simulation of text i, or None where that simulation failed. Only texts every
    explanation scored are compared (listed in `texts`), and every explanation is
    resampled with the same text indices, so that what the texts share cancels out of
    each difference. Each pair (a < b) gets score(a) - score(b), its interval, the
    two-sided bootstrap p-value and the Holm-adjusted one over all pairs.
    """
    _check(resamples, level)
    k = len(predicteds_by_explanation)
    if k < 2:
        raise ValueError("a comparison needs at least 2 explanations")
    for e, texts in enumerate(predicteds_by_explanation):
        if len(texts) != len(trues):
            raise ValueError(f"explanation {e}: {len(texts)} simulations for {len(trues)} texts")
    common = [
        i for i, t in enumerate(trues)
        if t is not None and all(texts[i] is not None for texts in predicteds_by_explanation)
    ]
    notes = []
    if len(common) < len(trues):
        notes.append(f"{len(trues) - len(common)} text(s) left out: not scored for every explanation")
    shared_trues = [trues[i] for i in common]
    # The point scores are exactly /score's: scorer.math's pooled correlation.
    points = [
        score_math.pooled_correlation(shared_trues, [texts[i] for i in common]) if common else None
        for texts in predicteds_by_explanation
    ]
    unavailable = None
    if len(common) < MIN_TEXTS:
        unavailable = (
            f"a comparison needs at least {MIN_TEXTS} texts scored for every explanation; {len(common)} given"
        )
        notes.append(unavailable)
        resampled = np.full((resamples, k), np.nan)
    else:
        counts = resample_counts(len(common), resamples, seed)
        resampled = np.column_stack(
            [
                resampled_correlations(correlation_sums(shared_trues, [texts[i] for i in common]), counts)
                for texts in predicteds_by_explanation
            ]
        )
    intervals, pairs, ranking = compare_resampled(
        points, resampled, level=level, seed=seed, alpha=alpha, unavailable=unavailable
    )
    return Comparison(points, intervals, pairs, ranking, common, alpha, "holm", notes)


def paired_bootstrap_statistic(
    points: Sequence[float | None],
    statistics: Sequence[Callable[[np.ndarray], np.ndarray]],
    n_items: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare k explanations by any score, on the same `n_items` texts.

    `points[e]` is explanation e's score; `statistics[e](counts)` its score on every
    resample, from the (B, n_items) count matrix shared by all (NaN where undefined). For
    the classifier scorers: `lambda c: balanced_accuracy_from_totals(c @ sums_e)` with
    `sums_e = balanced_accuracy_sums(labels, answers_e)` over the texts every explanation
    has an answer for, or `lambda c: resampled_auc(*auc_pairs(scores_e, labels), c)`.
    """
    _check(resamples, level)
    k = len(points)
    if k < 2 or len(statistics) != k:
        raise ValueError("a comparison needs at least 2 explanations, each with its statistic")
    notes: list[str] = []
    unavailable = None
    if n_items < MIN_TEXTS:
        unavailable = f"a comparison needs at least {MIN_TEXTS} texts scored for every explanation; {n_items} given"
        notes.append(unavailable)
        resampled = np.full((resamples, k), np.nan)
    else:
        counts = resample_counts(n_items, resamples, seed).astype(np.float64)
        resampled = np.column_stack([np.asarray(f(counts), dtype=np.float64) for f in statistics])
    intervals, pairs, ranking = compare_resampled(
        points, resampled, level=level, seed=seed, alpha=alpha, unavailable=unavailable
    )
    return Comparison(list(points), intervals, pairs, ranking, list(range(n_items)), alpha, "holm", notes)
