"""The scorer role: an explanation and a neuron's records in, a score with its metric out.

Every scorer keeps the error contract: a texts' failure is listed and left out,
never counted as a zero or a "no"; a request a scorer cannot score (one class
only) is a `ScorerInputError`, which the HTTP layer answers with 400.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from core.records import ActivationRecord
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer import math
from scorer.errors import ScorerInputError  # noqa: F401  (re-exported for the scorers)
from scorer.simulators.base import TextFailure


@dataclass
class ScorerResult:
    score: float | None
    metric: str
    # One entry per input text, same order: what the scorer saw and concluded.
    per_text: list[dict]
    failures: list[TextFailure] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    details: dict = field(default_factory=dict)


class Scorer(Protocol):
    name: str  # registry name: "simulation", "detection", "fuzzing", "embedding", "holistic", "intruder"
    metric: str  # "pearson", "balanced_accuracy", "auc", "rubric_level", "intruder_accuracy"
    # What scored: {"name": backend or simulator, "model": ..., "offline": bool}.
    scored_by: dict

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        """Score `explanation` on `records`; raises ScorerInputError, llm.errors.*."""
        ...


def scored_by(component) -> dict:
    """A judge or embedder as the response names it: its name, model, and whether it is offline."""
    return {"name": component.name, "model": component.model, "offline": component.offline}


def request_max(records: Sequence[ActivationRecord]) -> float:
    return max((r.max_value for r in records), default=0.0)


def activation_cut(records: Sequence[ActivationRecord], fraction: float) -> float:
    """The activation from which a token (and a text whose max reaches it) counts as activating."""
    return fraction * request_max(records)


def split_classes(
    records: Sequence[ActivationRecord], fraction: float, scorer: str
) -> tuple[list[bool], float]:
    """Which texts activate (max >= fraction x the request's max), and the cut.

    Raises ScorerInputError, naming what to add, when either class is empty.
    """
    top = request_max(records)
    if not top > 0:
        raise ScorerInputError(
            f"{scorer} needs both activating and non-activating texts: no value is above 0; "
            "add texts on which the neuron activates"
        )
    cut = fraction * top
    labels = [r.max_value >= cut for r in records]
    if all(labels):
        raise ScorerInputError(
            f"{scorer} needs both activating and non-activating texts: every text's max activation "
            f"is at least {cut:.4g} (activation_threshold {fraction:g} x the request's max {top:.4g}); "
            f"add texts whose max activation is below {cut:.4g}"
        )
    return labels, cut


def class_details(fraction: float, cut: float, labels: Sequence[bool]) -> dict:
    """How `split_classes` split the texts, for a result's details."""
    return {
        "activation_threshold": fraction,
        "activation_cut": cut,
        "activating_texts": sum(labels),
        "non_activating_texts": len(labels) - sum(labels),
    }


def all_failed(scorer: str, failures: Sequence[TextFailure]) -> str:
    reasons = "; ".join(f"[{f.index}] {f.reason}" for f in list(failures)[:5])
    return f"the {scorer} judge failed on every text: {reasons}"


def judged_accuracy(
    scorer: str,
    labels: Sequence[bool],
    answers: Sequence[bool | None],
    failures: Sequence[TextFailure],
) -> tuple[float | None, int]:
    """The balanced accuracy of a yes/no judge over the texts it answered, and how many it answered.

    Unanswered texts are left out, never counted as "no"; with none answered there is
    no score, and the judge's reasons go up as an UpstreamError.
    """
    answered = [(y, a) for y, a in zip(labels, answers) if a is not None]
    if not answered:
        raise UpstreamError(all_failed(scorer, failures))
    return math.balanced_accuracy([y for y, _ in answered], [a for _, a in answered]), len(answered)
