"""`score_interval` for every scorer: what each one's score is a function of, handed to scorer.stats.

Pure: it reads what a scorer already returns (its `per_text` entries, or the simulated and
true activations of the texts it scored) and resamples whole texts, leaving out the texts
the score left out (failed simulations, unanswered judge questions).

    simulation  pooled correlation       the scored texts' true and simulated activations
    detection   balanced accuracy        per answered text: activating?, the judge's yes/no
    fuzzing     balanced accuracy        per answered activating text: correct marks?, yes/no
    embedding   ROC-AUC                  per text: activating?, cosine with the explanation
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from scorer import stats
from scorer.errors import ScorerInputError
from scorer.stats import ArrayLike, IntervalResult, NoInterval


def simulation_interval(
    trues: Sequence[ArrayLike], predicteds: Sequence[ArrayLike], **options
) -> IntervalResult:
    return stats.bootstrap_interval(trues, predicteds, **options)


def detection_interval(per_text: Sequence[Mapping], **options) -> IntervalResult:
    answered = [t for t in per_text if t.get("answer") is not None]
    return stats.balanced_accuracy_interval(
        [t["label"] == "activating" for t in answered], [bool(t["answer"]) for t in answered], **options
    )


def fuzzing_interval(per_text: Sequence[Mapping], **options) -> IntervalResult:
    judged = [t for t in per_text if t.get("marking") is not None and t.get("answer") is not None]
    return stats.balanced_accuracy_interval(
        [t["marking"] == "correct" for t in judged], [bool(t["answer"]) for t in judged], **options
    )


def embedding_interval(per_text: Sequence[Mapping], **options) -> IntervalResult:
    return stats.auc_interval(
        [float(t["similarity"]) for t in per_text], [t["label"] == "activating" for t in per_text], **options
    )


def intruder_interval(rounds: Sequence[Mapping], **options) -> IntervalResult:
    """The intruder test's accuracy resampled over its answered rounds (each round is one
    independent trial; the texts are shared between rounds, so rounds, not texts, are drawn)."""
    answered = [r for r in rounds if r.get("correct") is not None]
    if len(answered) < stats.MIN_TEXTS:
        return NoInterval(f"an interval needs at least {stats.MIN_TEXTS} answered rounds; {len(answered)} given")
    sums = np.array([[float(bool(r["correct"])), 1.0] for r in answered])
    counts = stats.resample_counts(len(answered), options["resamples"], options["seed"])
    totals = counts @ sums
    return stats.percentile_interval(
        totals[:, 0] / totals[:, 1], level=options["level"], seed=options["seed"],
        method="percentile bootstrap over rounds",
    )


_FROM_PER_TEXT = {
    "detection": detection_interval,
    "fuzzing": fuzzing_interval,
    "embedding": embedding_interval,
}


def score_interval(
    scorer: str,
    per_text: Sequence[Mapping] = (),
    *,
    trues: Sequence[ArrayLike] | None = None,
    predicteds: Sequence[ArrayLike] | None = None,
    details: Mapping | None = None,
    resamples: int = stats.DEFAULT_RESAMPLES,
    level: float = stats.DEFAULT_LEVEL,
    seed: int = stats.DEFAULT_SEED,
) -> IntervalResult:
    """The bootstrap interval of scorer `scorer`'s score.

    simulation: pass `trues` and `predicteds` of the scored texts (failed ones left out);
    intruder: the result's `details` (its rounds are resampled); the others: the result's
    `per_text`. A scorer with no such statistic (holistic: one judgement) gets a NoInterval.
    """
    options = {"resamples": resamples, "level": level, "seed": seed}
    if scorer == "simulation":
        if trues is None or predicteds is None:
            return NoInterval("no simulated texts to resample")
        return simulation_interval(trues, predicteds, **options)
    if scorer == "intruder":
        return intruder_interval((details or {}).get("round_details", []), **options)
    build = _FROM_PER_TEXT.get(scorer)
    if build is None:
        return NoInterval(f"no bootstrap over texts is defined for the {scorer} scorer")
    return build(per_text, **options)


# -- paired comparisons of classifier scorers ------------------------------------------------

# The scorers /compare can resample text by text, each with whether a per-text entry was answered.
COMPARABLE = {
    "detection": lambda t: t.get("answer") is not None,
    "fuzzing": lambda t: t.get("marking") is not None and t.get("answer") is not None,
    "embedding": lambda t: t.get("similarity") is not None,
}


def _statistic(scorer: str, entries: Sequence[Mapping]):
    if scorer == "detection":
        sums = stats.balanced_accuracy_sums([t["label"] == "activating" for t in entries], [bool(t["answer"]) for t in entries])
        return lambda counts: stats.balanced_accuracy_from_totals(counts @ sums)
    if scorer == "fuzzing":
        sums = stats.balanced_accuracy_sums([t["marking"] == "correct" for t in entries], [bool(t["answer"]) for t in entries])
        return lambda counts: stats.balanced_accuracy_from_totals(counts @ sums)
    wins, pos, neg = stats.auc_pairs([float(t["similarity"]) for t in entries], [t["label"] == "activating" for t in entries])
    return lambda counts: stats.resampled_auc(wins, pos, neg, counts)


def comparable_message(scorer: str) -> str:
    return (
        f"explanations scored by {scorer} cannot be compared text by text; "
        f"/compare takes the simulation, {', '.join(COMPARABLE)} scorers"
    )


def paired_statistic(scorer: str, per_texts: Sequence[Sequence[Mapping]]):
    """For `paired_bootstrap_statistic`: each explanation's score on the texts every explanation
    has an answer for, its statistic over resample counts, and how many such texts there are.
    ValueError for a scorer with no per-text statistic."""
    answered = COMPARABLE.get(scorer)
    if answered is None:
        raise ScorerInputError(comparable_message(scorer))
    n = min(len(p) for p in per_texts)
    common = [i for i in range(n) if all(answered(p[i]) for p in per_texts)]
    statistics = [_statistic(scorer, [p[i] for i in common]) for p in per_texts]
    ones = np.ones((1, len(common)))
    points = []
    for statistic in statistics:
        value = float(statistic(ones)[0]) if common else float("nan")
        points.append(value if np.isfinite(value) else None)
    return points, statistics, len(common)
