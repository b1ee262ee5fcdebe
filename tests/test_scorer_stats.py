"""Bootstrap intervals over texts, paired comparisons of explanations, Holm (scorer/stats.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scorer import math as score_math
from scorer import stats
from scorer.intervals import score_interval


def synthetic(n_texts: int, noise: float, seed: int = 0, tokens: int = 32):
    """Texts whose simulation is the truth plus noise: a known, positive correlation."""
    rng = np.random.default_rng(seed)
    trues = [np.maximum(rng.normal(0, 1, tokens), 0) for _ in range(n_texts)]
    predicteds = [t + rng.normal(0, noise, tokens) for t in trues]
    return trues, predicteds


# -- the interval of the pooled correlation ---------------------------------------------------


def test_same_seed_same_interval_other_seed_other_interval():
    trues, predicteds = synthetic(12, 1.0)
    a = stats.bootstrap_interval(trues, predicteds, seed=7)
    b = stats.bootstrap_interval(trues, predicteds, seed=7)
    c = stats.bootstrap_interval(trues, predicteds, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.resamples == 1000 and a.level == 0.95 and a.method == stats.METHOD


def test_interval_contains_the_pooled_score_and_narrows_with_more_texts():
    widths = []
    for n_texts in (5, 20, 80):
        trues, predicteds = synthetic(n_texts, 1.0, seed=n_texts)
        point = score_math.pooled_correlation(trues, predicteds)
        interval = stats.bootstrap_interval(trues, predicteds)
        assert interval.low <= point <= interval.high
        assert -1.0 <= interval.low < interval.high <= 1.0
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2]


def test_a_higher_level_gives_a_wider_interval():
    trues, predicteds = synthetic(15, 1.0)
    narrow = stats.bootstrap_interval(trues, predicteds, level=0.8)
    wide = stats.bootstrap_interval(trues, predicteds, level=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_vectorised_resample_correlations_match_a_direct_computation():
    # Texts of different lengths and scales, one with a constant simulation.
    rng = np.random.default_rng(5)
    trues = [rng.gamma(2.0, 3.0, size=int(rng.integers(3, 40))) * 1e3 for _ in range(9)]
    predicteds = [t / 1e3 + rng.normal(0, 2, t.size) for t in trues]
    predicteds[3] = np.zeros(trues[3].size)
    data = stats.correlation_sums(trues, predicteds)
    indices = stats.resample_indices(len(trues), 200, seed=11)
    counts = stats.counts_from_indices(indices, len(trues))
    assert (counts.sum(axis=1) == len(trues)).all()
    fast = stats.resampled_correlations(data, counts)
    for row, r in zip(indices, fast):
        direct = score_math.pooled_correlation([trues[i] for i in row], [predicteds[i] for i in row])
        if direct is None:
            assert np.isnan(r)
        else:
            assert r == pytest.approx(direct, abs=1e-10)


def test_a_resample_that_draws_only_constant_simulations_is_undefined_not_a_number():
    trues = [[0.0, 1.0, 2.0], [3.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    predicteds = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 1.0]]
    data = stats.correlation_sums(trues, predicteds)
    only_constant = np.array([[2, 1, 0], [3, 0, 0]])
    assert np.isnan(stats.resampled_correlations(data, only_constant)).all()
    interval = stats.bootstrap_interval(trues, predicteds, resamples=500)
    assert interval.undefined_resamples > 0
    assert interval.resamples == 500
    json.dumps(interval.to_dict(), allow_nan=False)


def test_too_few_texts_or_an_undefined_score_gives_a_reason_not_an_interval():
    one = stats.bootstrap_interval([[0.0, 1.0, 2.0]], [[0.0, 1.0, 1.5]])
    assert isinstance(one, stats.NoInterval) and not one
    assert "at least 2" in one.reason
    none = stats.bootstrap_interval([], [])
    assert isinstance(none, stats.NoInterval)
    constant = stats.bootstrap_interval([[1.0, 2.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert isinstance(constant, stats.NoInterval) and "undefined" in constant.reason
    fields = stats.interval_fields(constant)
    assert fields["score_interval"] is None and fields["score_interval_reason"] == constant.reason
    json.dumps(fields, allow_nan=False)


def test_bad_options_are_refused():
    trues, predicteds = synthetic(4, 1.0)
    with pytest.raises(ValueError):
        stats.bootstrap_interval(trues, predicteds, level=1.0)
    with pytest.raises(ValueError):
        stats.bootstrap_interval(trues, predicteds, resamples=0)
    with pytest.raises(ValueError):
        stats.bootstrap_interval(trues, predicteds[:3])


# -- the other scorers --------------------------------------------------------------------------


def test_balanced_accuracy_resamples_match_a_direct_computation():
    labels = [True, True, False, False, True, False, True, False]
    answers = [True, False, False, True, True, False, True, False]
    sums = stats.balanced_accuracy_sums(labels, answers)
    indices = stats.resample_indices(len(labels), 100, seed=2)
    fast = stats.balanced_accuracy_from_totals(stats.counts_from_indices(indices, len(labels)) @ sums)
    for row, value in zip(indices, fast):
        direct = score_math.balanced_accuracy([labels[i] for i in row], [answers[i] for i in row])
        assert np.isnan(value) if direct is None else value == pytest.approx(direct)
    interval = stats.balanced_accuracy_interval(labels, answers)
    point = score_math.balanced_accuracy(labels, answers)
    assert interval.low <= point <= interval.high


def test_auc_resamples_match_a_direct_computation_with_ties():
    scores = [0.9, 0.4, 0.4, 0.1, 0.7, 0.4, 0.2]
    labels = [True, True, False, False, True, False, False]
    wins, pos, neg = stats.auc_pairs(scores, labels)
    indices = stats.resample_indices(len(scores), 100, seed=4)
    fast = stats.resampled_auc(wins, pos, neg, stats.counts_from_indices(indices, len(scores)).astype(float))
    for row, value in zip(indices, fast):
        direct = score_math.roc_auc([scores[i] for i in row], [labels[i] for i in row])
        assert np.isnan(value) if direct is None else value == pytest.approx(direct)
    assert stats.auc_interval(scores, labels) == stats.auc_interval(scores, labels)


def test_generic_bootstrap_over_indices_takes_any_vectorised_statistic():
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    interval = stats.bootstrap_indices(lambda idx: values[idx].mean(axis=1), values.size, seed=3)
    assert interval.low < values.mean() < interval.high
    assert isinstance(stats.bootstrap_indices(lambda idx: values[idx].mean(axis=1), 1), stats.NoInterval)


def test_score_interval_for_every_scorer_from_what_it_returns():
    trues, predicteds = synthetic(6, 0.5)
    assert score_interval("simulation", trues=trues, predicteds=predicteds) == stats.bootstrap_interval(
        trues, predicteds
    )
    detection = [
        {"label": "activating", "answer": True}, {"label": "activating", "answer": None},
        {"label": "non_activating", "answer": False}, {"label": "non_activating", "answer": True},
        {"label": "activating", "answer": True}, {"label": "non_activating", "answer": False},
    ]
    # The unanswered text is left out, as the score leaves it out.
    assert score_interval("detection", detection) == stats.balanced_accuracy_interval(
        [True, False, False, True, False], [True, False, True, True, False]
    )
    fuzzing = [
        {"label": "non_activating", "marking": None, "answer": None},
        {"label": "activating", "marking": "correct", "answer": True},
        {"label": "activating", "marking": "random", "answer": False},
        {"label": "activating", "marking": "correct", "answer": False},
        {"label": "activating", "marking": "random", "answer": False},
    ]
    assert score_interval("fuzzing", fuzzing) == stats.balanced_accuracy_interval(
        [True, False, True, False], [True, False, False, False]
    )
    embedding = [
        {"label": "activating", "similarity": 0.8}, {"label": "non_activating", "similarity": 0.3},
        {"label": "activating", "similarity": 0.5}, {"label": "non_activating", "similarity": 0.6},
    ]
    assert score_interval("embedding", embedding) == stats.auc_interval(
        [0.8, 0.3, 0.5, 0.6], [True, False, True, False]
    )
    assert isinstance(score_interval("simulation"), stats.NoInterval)
    unknown = score_interval("telepathy", [])  # a scorer with no per-text bootstrap: null with the reason
    assert isinstance(unknown, stats.NoInterval) and "telepathy" in unknown.reason


# -- comparing explanations ---------------------------------------------------------------------


def test_paired_bootstrap_tells_a_clear_difference_and_not_an_identical_pair():
    trues, good = synthetic(15, 0.3, seed=1)
    rng = np.random.default_rng(9)
    poor = [t + rng.normal(0, 3.0, t.size) for t in trues]
    comparison = stats.paired_bootstrap(trues, [good, poor, good])
    by_pair = {(p.a, p.b): p for p in comparison.pairs}
    clear = by_pair[(0, 1)]
    assert clear.difference == pytest.approx(comparison.scores[0] - comparison.scores[1])
    assert clear.difference > 0 and clear.interval.low > 0
    assert clear.p_adjusted <= 0.05
    same = by_pair[(0, 2)]
    assert same.difference == 0.0 and same.p_value == 1.0 and same.p_adjusted == 1.0
    # The point scores are /score's.
    assert comparison.scores[0] == score_math.pooled_correlation(trues, good)
    # Ranking: the two identical explanations share the first rank, the poor one is second.
    ranks = {r["index"]: r["rank"] for r in comparison.ranking}
    assert ranks == {0: 1, 2: 1, 1: 2}
    body = comparison.to_dict()
    json.dumps(body, allow_nan=False)
    assert [(p["a"], p["b"]) for p in body["pairs"]] == [(0, 1), (0, 2), (1, 2)]
    assert all(p["significant"] == (p["p_adjusted"] <= 0.05) for p in body["pairs"])


def test_paired_bootstrap_is_seeded_and_uses_only_texts_every_explanation_scored():
    trues, a = synthetic(8, 0.5, seed=2)
    _, b = synthetic(8, 1.5, seed=3)
    b = list(b)
    b[4] = None  # a failed simulation: text 4 is left out for both
    first = stats.paired_bootstrap(trues, [a, b], seed=5)
    assert first.texts == [0, 1, 2, 3, 5, 6, 7]
    assert first.notes and "1 text" in first.notes[0]
    assert first.to_dict() == stats.paired_bootstrap(trues, [a, b], seed=5).to_dict()
    kept = [0, 1, 2, 3, 5, 6, 7]
    assert first.scores[1] == score_math.pooled_correlation([trues[i] for i in kept], [b[i] for i in kept])


def test_paired_bootstrap_with_too_few_texts_answers_without_p_values():
    comparison = stats.paired_bootstrap([[0.0, 1.0, 2.0]], [[[0.0, 1.0, 2.0]], [[2.0, 1.0, 0.0]]])
    assert comparison.pairs[0].p_value is None and comparison.pairs[0].p_adjusted is None
    assert not comparison.pairs[0].interval and not comparison.intervals[0]
    assert comparison.scores == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert [r["rank"] for r in comparison.ranking] == [1, 1]  # nothing tells them apart
    json.dumps(comparison.to_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        stats.paired_bootstrap([[0.0, 1.0]], [[[0.0, 1.0]]])


def test_two_sided_p_value_has_the_plus_one_correction():
    assert stats.two_sided_p(np.array([1.0] * 99)) == pytest.approx(2 * 1 / 100)
    assert stats.two_sided_p(np.array([1.0] * 50 + [-1.0] * 50)) == 1.0
    assert stats.two_sided_p(np.array([np.nan, np.nan])) is None


def test_ranking_groups_by_the_best_of_each_group():
    points = [0.9, 0.85, 0.5, 0.45, None]

    def pair(a, b, p):
        return stats.PairComparison(a, b, None, stats.NoInterval("-"), p, p)

    pairs = [
        pair(0, 1, 0.4), pair(0, 2, 0.01), pair(0, 3, 0.01), pair(0, 4, None),
        pair(1, 2, 0.2), pair(1, 3, 0.01), pair(1, 4, None), pair(2, 3, 0.7),
        pair(2, 4, None), pair(3, 4, None),
    ]
    ranking = stats.rank_explanations(points, pairs)
    assert [(r["index"], r["rank"]) for r in ranking] == [(0, 1), (1, 1), (2, 2), (3, 2), (4, None)]


# -- Holm (moved from explainer/search/stats.py; the search imports it from here) ----------------


def test_holm_hand_example_with_ties_and_an_undefined_p():
    p = [0.01, 0.04, 0.03, 0.005, 0.04, None]
    # m = 6 tests (the undefined one counts, ranked last as p = 1):
    #   0.005 * 6 = 0.03
    #   0.01  * 5 = 0.05
    #   0.03  * 4 = 0.12
    #   0.04  * 3 = 0.12
    #   0.04  * 2 = 0.08 -> 0.12 (running maximum)
    assert stats.holm(p) == pytest.approx([0.05, 0.12, 0.12, 0.03, 0.12, None])
    adjusted = stats.holm(p)
    assert adjusted[5] is None
    # Ties get equal adjusted values.
    assert adjusted[1] == adjusted[4]


def test_holm_is_capped_monotone_and_never_below_the_raw_p():
    assert stats.holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []
    assert stats.holm([None]) == [None]
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 12))))
        adjusted = stats.holm(p)
        order = np.argsort(p, kind="stable")
        ranked = [adjusted[i] for i in order]
        assert all(a <= b for a, b in zip(ranked, ranked[1:]))
        assert all(raw <= adj <= 1.0 for raw, adj in zip(p, adjusted))
        # Holm is uniformly more powerful than Bonferroni.
        assert all(adj <= min(1.0, len(p) * raw) + 1e-15 for raw, adj in zip(p, adjusted))


def test_paired_comparison_of_classifier_scores():
    rng = np.random.default_rng(12)
    labels = [bool(x) for x in rng.integers(0, 2, 40)]
    good = [y if rng.random() < 0.95 else not y for y in labels]
    chance = [bool(x) for x in rng.integers(0, 2, 40)]
    answer_sets = [good, chance, good]
    sums = [stats.balanced_accuracy_sums(labels, a) for a in answer_sets]
    comparison = stats.paired_bootstrap_statistic(
        [score_math.balanced_accuracy(labels, a) for a in answer_sets],
        [lambda c, s=s: stats.balanced_accuracy_from_totals(c @ s) for s in sums],
        len(labels),
    )
    by_pair = {(p.a, p.b): p for p in comparison.pairs}
    assert by_pair[(0, 1)].difference > 0 and by_pair[(0, 1)].p_adjusted <= 0.05
    assert by_pair[(0, 2)].p_value == 1.0
    assert {r["index"]: r["rank"] for r in comparison.ranking} == {0: 1, 2: 1, 1: 2}
    json.dumps(comparison.to_dict(), allow_nan=False)
    # The resampled balanced accuracies are those of the one-explanation interval.
    alone = stats.balanced_accuracy_interval(labels, good)
    assert comparison.intervals[0] == alone


@pytest.mark.parametrize("scale", [1e-200, 1e-3, 1.0, 1e200])
def test_the_interval_does_not_depend_on_the_scale_of_the_values(scale):
    trues, predicteds = synthetic(10, 1.0, seed=4)
    base = stats.bootstrap_interval(trues, predicteds)
    scaled = stats.bootstrap_interval([t * scale for t in trues], [p * scale for p in predicteds])
    assert scaled.undefined_resamples == base.undefined_resamples == 0
    assert scaled.low == pytest.approx(base.low, abs=1e-9) and scaled.high == pytest.approx(base.high, abs=1e-9)
