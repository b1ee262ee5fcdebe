"""Detection (delphi; Neuronpedia's autointerp): can a judge who reads only the
explanation tell the texts on which the neuron activates from those on which it does not?

A text is activating when its max activation reaches `activation_threshold` x
the request's max. The judge answers yes/no per text, several texts a prompt;
the score is the balanced accuracy of its answers (the mean of the true-positive
and true-negative rates), so that a judge answering "yes" to everything scores
0.5 whatever the mix of texts. Texts without a usable answer are left out and
listed.

Where the backend returns top logprobs, the judge's P(yes) per text is in
`texts` and the ROC-AUC of those probabilities against the labels is `auc` in
the details, beside `balanced_accuracy` (the score): the AUC credits a judge that
is unsure in the right direction, the accuracy only its final word. When the
texts span activation levels, `quantiles` gives the accuracy per bin of max
activation (`quantiles.py`).
"""
from __future__ import annotations

from typing import Sequence

from core.records import ActivationRecord
from scorer import math
from scorer.scorers.base import ScorerResult, class_details, judged_accuracy, scored_by, split_classes
from scorer.scorers.quantiles import accuracy_by_bin

METRIC = "balanced_accuracy"
DEFAULT_ACTIVATION_THRESHOLD = 0.3


def label_name(activating: bool) -> str:
    return "activating" if activating else "non_activating"


def classification_details(labels: Sequence[bool], answers: Sequence[bool | None]) -> dict:
    """Confusion counts and rates over the answered texts (None where a class is empty)."""
    pairs = [(y, a) for y, a in zip(labels, answers) if a is not None]
    tp = sum(1 for y, a in pairs if y and a)
    fn = sum(1 for y, a in pairs if y and not a)
    tn = sum(1 for y, a in pairs if not y and not a)
    fp = sum(1 for y, a in pairs if not y and a)
    return {
        "counts": {"true_positive": tp, "false_negative": fn, "true_negative": tn, "false_positive": fp},
        "true_positive_rate": tp / (tp + fn) if tp + fn else None,
        "true_negative_rate": tn / (tn + fp) if tn + fp else None,
    }


def probability_auc(
    labels: Sequence[bool], answers: Sequence[bool | None], probabilities: Sequence[float | None] | None
) -> float | None:
    """ROC-AUC of the judge's P(yes), when every answered text has one (logprob backends)."""
    pairs = [(y, p) for y, a, p in zip(labels, answers, probabilities or []) if a is not None]
    if not pairs or any(p is None for _, p in pairs):
        return None
    return math.roc_auc([p for _, p in pairs], [y for y, _ in pairs])


class DetectionScorer:
    name = "detection"
    metric = METRIC

    def __init__(self, judge, *, activation_threshold: float = DEFAULT_ACTIVATION_THRESHOLD) -> None:
        self.judge = judge
        self.activation_threshold = activation_threshold
        self.scored_by = scored_by(judge)

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        records = list(records)
        labels, cut = split_classes(records, self.activation_threshold, self.name)
        run = self.judge(explanation, [r.tokens for r in records], deadline=deadline)
        score, texts_scored = judged_accuracy(self.name, labels, run.answers, run.failures)
        probabilities = run.probabilities or [None] * len(records)
        correct = [None if a is None else a == y for y, a in zip(labels, run.answers)]
        per_text = [
            {
                "index": i,
                "label": label_name(y),
                "max_activation": float(r.max_value),
                "answer": a,
                "correct": c,
                "probability": p,
            }
            for i, (r, y, a, c, p) in enumerate(zip(records, labels, run.answers, correct, probabilities))
        ]
        return ScorerResult(
            score=score,
            metric=self.metric,
            per_text=per_text,
            failures=run.failures,
            usage=run.usage,
            details={
                **class_details(self.activation_threshold, cut, labels),
                "texts_scored": texts_scored,
                **classification_details(labels, run.answers),
                "balanced_accuracy": score,
                "auc": probability_auc(labels, run.answers, run.probabilities),
                "quantiles": accuracy_by_bin(records, correct, probabilities=probabilities),
            },
        )
