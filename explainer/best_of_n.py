"""Best-of-n: score each candidate explanation on held-out texts and rank them.

The scoring itself is injected (`simulate_and_score(explanation, records) -> float | None`,
e.g. a simulator run and the pooled correlation), so this module knows nothing of
simulators, backends or money.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from explainer.errors import ExplainerError
from explainer.explain import ExplainResult, explain
from explainer.records import ActivationRecord, split_explain_heldout

SimulateAndScore = Callable[[str, Sequence[ActivationRecord]], "float | None"]

__all__ = ["BestOfN", "RankedCandidate", "explain_best_of_n", "rank_candidates", "split_explain_heldout"]


@dataclass(frozen=True)
class RankedCandidate:
    explanation: str
    score: float | None  # None: the candidate could not be scored (undefined correlation, failed simulation)


def rank_candidates(
    candidates: Sequence[str],
    heldout_records: Sequence[ActivationRecord],
    simulate_and_score: SimulateAndScore,
) -> list[RankedCandidate]:
    """Every candidate with its held-out score, best first; unscored ones last.

    Ties keep the candidates' order. A NaN score counts as None. Exceptions from
    `simulate_and_score` propagate: a per-candidate failure should come back as None.
    """
    if not heldout_records:
        raise ExplainerError("best-of-n needs at least one held-out text")
    scored = []
    for order, explanation in enumerate(candidates):
        score = simulate_and_score(explanation, heldout_records)
        if score is not None:
            score = float(score)
            if math.isnan(score):
                score = None
        scored.append((order, RankedCandidate(explanation, score)))
    scored.sort(key=lambda item: (item[1].score is None, -(item[1].score or 0.0), item[0]))
    return [candidate for _, candidate in scored]


@dataclass
class BestOfN:
    result: ExplainResult  # the explanation run; `result.explanation` is the best candidate
    ranked: list[RankedCandidate]
    heldout_texts: int


def explain_best_of_n(
    records: Sequence[ActivationRecord],
    simulate_and_score: SimulateAndScore,
    *,
    random_records: Sequence[ActivationRecord] = (),
    top_k: int,
    **explain_options,
) -> BestOfN:
    """Explain from the top texts, score every candidate on the held-out rest, keep the best."""
    explain_part, heldout = split_explain_heldout(records, top_k=top_k, random_records=random_records)
    if not heldout:
        raise ExplainerError(
            "scoring candidates needs held-out texts: send more texts than top_k, "
            "or random texts in random_activations"
        )
    result = explain(explain_part, top_k=top_k, **explain_options)
    ranked = rank_candidates(result.candidates, heldout, simulate_and_score)
    result.explanation = ranked[0].explanation
    return BestOfN(result=result, ranked=ranked, heldout_texts=len(heldout))
