"""The hypotheses a search tried, with their statistics, ranked.

Every statistic is on the test texts (held out from the proposer, plus the random texts; see
splits.py). Ranking: by correlation (undefined last), then balanced accuracy, then the earlier
round, then the order they were tried in. Significance: the one-sided p-value of each
correlation (H1: correlation > 0), Holm-adjusted over every hypothesis the search evaluated,
including those whose p-value is undefined (counted as p = 1), compared with `alpha`; only
when texts were held out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from explainer.search.evaluate import Evaluation
from explainer.search.stats import correlation_p_value, fisher_ci
from scorer.stats import holm

ALPHA = 0.05
CORRECTION = "holm"
P_VALUE_TEST = "one-sided t-test of the correlation, H1: correlation > 0"


@dataclass(frozen=True)
class RankedHypothesis:
    hypothesis: str
    round: int
    correlation: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    p_holm: float | None
    significant: bool
    balanced_accuracy: float | None
    threshold: float | None
    answered: int
    failed: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return out


def rank_hypotheses(
    evaluations: Sequence[Evaluation], alpha: float = ALPHA, *, held_out: bool = True
) -> list[RankedHypothesis]:
    """`held_out`: the statistics are on texts the proposer did not see; without that, no
    hypothesis is called significant (its p-value is optimistic), though p-values are given."""
    p_values = [correlation_p_value(e.correlation, e.answered, "greater") for e in evaluations]
    adjusted = holm(p_values)
    rows = []
    for order, (e, p, p_adj) in enumerate(zip(evaluations, p_values, adjusted)):
        row = RankedHypothesis(
            hypothesis=e.hypothesis,
            round=e.round,
            correlation=e.correlation,
            ci95=fisher_ci(e.correlation, e.answered),
            p_value=p,
            p_holm=p_adj,
            significant=held_out and p_adj is not None and p_adj <= alpha,
            balanced_accuracy=e.balanced_accuracy,
            threshold=e.threshold,
            answered=e.answered,
            failed=e.failed,
        )
        rows.append((order, row))
    rows.sort(key=lambda item: (*rank_key(item[1]), item[0]))
    return [row for _, row in rows]


def rank_key(item) -> tuple:
    """Best first: higher correlation, then higher balanced accuracy, then earlier round."""
    return (
        item.correlation is None,
        -(item.correlation if item.correlation is not None else 0.0),
        -(item.balanced_accuracy if item.balanced_accuracy is not None else 0.0),
        item.round,
    )
