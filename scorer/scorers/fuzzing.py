"""Fuzzing (delphi; Neuronpedia's autointerp): does the explanation say *which tokens* fire?

Only activating texts are judged (max activation >= `activation_threshold` x
the request's max). Each is shown with some tokens marked `<<like this>>`:
most with the truly activating tokens marked (a token activates by the same
cut), and a seeded subset (`random_fraction`, default half) with as many
randomly chosen non-activating tokens marked instead. The judge says whether
the marks fit the explanation; the score is the balanced accuracy of telling
correct from random marks. The marks depend on the records and the seed only,
never on the explanation, so that explanations of one neuron are judged on the
same marked texts.

As in detection, the judge's P(yes) (from top logprobs) is in `texts`, their
ROC-AUC for telling correct from random marks is `auc` in the details, and
`quantiles` gives the accuracy per bin of max activation when the judged texts
span several.
"""
from __future__ import annotations

import random
from typing import Sequence

from core.records import ActivationRecord
from scorer.scorers.base import ScorerInputError, ScorerResult, judged_accuracy, request_max, scored_by
from scorer.scorers.detection import DEFAULT_ACTIVATION_THRESHOLD, classification_details, probability_auc
from scorer.scorers.quantiles import accuracy_by_bin
from scorer.simulators.base import TextFailure

METRIC = "balanced_accuracy"
DEFAULT_RANDOM_FRACTION = 0.5
CORRECT, RANDOM = "correct", "random"


def plan_marks(
    records: Sequence[ActivationRecord], cut: float, random_fraction: float, seed: int
) -> dict[int, tuple[str, list[bool]]]:
    """For each activating text, its marking kind and the marks. Pure: same input, same marks.

    Raises ScorerInputError when the two kinds cannot both be shown.
    """
    activating = [i for i, r in enumerate(records) if r.max_value >= cut]
    truly = {i: [v >= cut for v in records[i].values] for i in activating}
    eligible = [i for i in activating if not all(truly[i])]  # has tokens to mark at random
    if len(activating) < 2:
        raise ScorerInputError(
            f"fuzzing needs both correctly and randomly marked texts, so at least 2 activating texts "
            f"(max activation >= {cut:.4g}); {len(activating)} given: add texts on which the neuron activates"
        )
    if not eligible:
        raise ScorerInputError(
            "fuzzing needs both correctly and randomly marked texts: every token of every activating "
            f"text is at or above {cut:.4g}, so none can be marked at random; add activating texts "
            f"with tokens below {cut:.4g}"
        )
    n_random = max(1, min(round(random_fraction * len(activating)), len(activating) - 1, len(eligible)))
    rng = random.Random(seed)
    chosen = set(rng.sample(eligible, n_random))
    plan: dict[int, tuple[str, list[bool]]] = {}
    for i in activating:
        if i not in chosen:
            plan[i] = (CORRECT, truly[i])
            continue
        off = [j for j, on in enumerate(truly[i]) if not on]
        picked = set(rng.sample(off, min(sum(truly[i]), len(off))))
        plan[i] = (RANDOM, [j in picked for j in range(len(truly[i]))])
    return plan


class FuzzingScorer:
    name = "fuzzing"
    metric = METRIC

    def __init__(
        self,
        judge,
        *,
        activation_threshold: float = DEFAULT_ACTIVATION_THRESHOLD,
        random_fraction: float = DEFAULT_RANDOM_FRACTION,
        seed: int = 0,
    ) -> None:
        self.judge = judge
        self.activation_threshold = activation_threshold
        self.random_fraction = random_fraction
        self.seed = seed
        self.scored_by = scored_by(judge)

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        records = list(records)
        top = request_max(records)
        if not top > 0:
            raise ScorerInputError(
                "fuzzing needs activating texts: no value is above 0; add texts on which the neuron activates"
            )
        cut = self.activation_threshold * top
        plan = plan_marks(records, cut, self.random_fraction, self.seed)
        judged = sorted(plan)
        run = self.judge(
            explanation,
            [records[i].tokens for i in judged],
            highlights=[plan[i][1] for i in judged],
            deadline=deadline,
        )
        # The judge numbers the texts it saw; the response numbers the request's.
        failures = [TextFailure(index=judged[f.index], reason=f.reason) for f in run.failures]
        labels = [plan[i][0] == CORRECT for i in judged]
        score, texts_scored = judged_accuracy(self.name, labels, run.answers, failures)

        probabilities = run.probabilities or [None] * len(judged)
        by_text = {i: (a, p) for i, a, p in zip(judged, run.answers, probabilities)}
        per_text = []
        correct: list[bool | None] = [None] * len(records)
        for i, record in enumerate(records):
            entry: dict = {"index": i, "max_activation": float(record.max_value)}
            if i not in plan:
                entry.update(label="non_activating", marking=None, marked=[], answer=None, correct=None, probability=None)
            else:
                kind, marks = plan[i]
                answer, p = by_text[i]
                correct[i] = None if answer is None else answer == (kind == CORRECT)
                entry.update(
                    label="activating",
                    marking=kind,
                    marked=[j for j, m in enumerate(marks) if m],
                    answer=answer,
                    correct=correct[i],
                    probability=p,
                )
            per_text.append(entry)
        return ScorerResult(
            score=score,
            metric=self.metric,
            per_text=per_text,
            failures=failures,
            usage=run.usage,
            details={
                "activation_threshold": self.activation_threshold,
                "activation_cut": cut,
                "random_fraction": self.random_fraction,
                "seed": self.seed,
                "correctly_marked_texts": sum(labels),
                "randomly_marked_texts": len(labels) - sum(labels),
                "texts_scored": texts_scored,
                **classification_details(labels, run.answers),
                "balanced_accuracy": score,
                "auc": probability_auc(labels, run.answers, run.probabilities),
                "quantiles": accuracy_by_bin(
                    records,
                    correct,
                    judged=[i in plan for i in range(len(records))],
                    probabilities=[by_text[i][1] if i in plan else None for i in range(len(records))],
                ),
            },
        )
