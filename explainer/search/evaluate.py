"""Evaluating a hypothesis: a yes/no answer per text from a judge, and how well the answers
track the neuron.

Two measures of agreement, on the texts with a usable answer only (an unusable answer is
excluded and counted, never read as "no"):
- `correlation`: Pearson correlation of the 0/1 answers with each text's maximum activation
  (AutoInterpret's score; the point-biserial correlation).
- `balanced_accuracy` at the best `threshold`: the texts whose maximum is >= threshold count
  as "on", and "yes" predicts "on"; the threshold is the one that maximises the balanced
  accuracy, the flexible cut-off for "on" AutoInterpret's authors asked for. Being the best
  of several cut-offs, it is optimistic on few texts; the p-value is on the correlation.

The judge answers for every text; the measures are taken twice (see splits.py): on the test
texts (what is reported, tested and ranked) and on the proposal texts (the `feedback` the
proposer and the loop's patience see).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from core.records import ActivationRecord
from llm.usage import Usage
from scorer.math import pearson


class JudgeResult(Protocol):
    """What a judge run gives back (scorer.judge.JudgeRun)."""

    answers: list[bool | None]  # one per text; None: no usable answer
    failures: list[Any]  # TextFailure(index, reason)
    usage: Usage


# A judge bound to its backend, model and texts: (condition, deadline) -> JudgeResult.
Judge = Callable[[str, "float | None"], JudgeResult]


@dataclass(frozen=True)
class Agreement:
    correlation: float | None
    balanced_accuracy: float | None
    threshold: float | None  # per-text maximum from which a text counts as "on"
    answered: int
    failed: int
    yes: int


def best_threshold(
    answers: Sequence[bool], maxima: Sequence[float]
) -> tuple[float | None, float | None]:
    """(balanced accuracy, threshold) of the best cut-off "on = maximum >= threshold".

    Thresholds tried: every distinct maximum but the smallest (so both classes exist); ties go
    to the lowest threshold. (None, None) when the maxima are all equal; (0.5, None) when the
    answers are constant, since then no cut-off does better than chance.
    """
    yes = np.asarray(answers, dtype=bool)
    m = np.asarray(maxima, dtype=np.float64)
    if yes.shape != m.shape:
        raise ValueError(f"length mismatch: {yes.size} answers, {m.size} maxima")
    levels = np.unique(m)
    if levels.size < 2:
        return None, None
    if yes.all() or not yes.any():
        return 0.5, None
    thresholds = levels[1:]
    on = m[None, :] >= thresholds[:, None]  # one row per threshold
    tpr = (on & yes).sum(axis=1) / on.sum(axis=1)
    tnr = (~on & ~yes).sum(axis=1) / (~on).sum(axis=1)
    scores = (tpr + tnr) / 2.0
    best = int(np.argmax(scores))  # the first maximum: the lowest threshold
    return float(scores[best]), float(thresholds[best])


def agreement(answers: Sequence[bool | None], maxima: Sequence[float]) -> Agreement:
    """Both measures over the texts whose answer is usable."""
    if len(answers) != len(maxima):
        raise ValueError(f"length mismatch: {len(answers)} answers, {len(maxima)} texts")
    kept = [i for i, a in enumerate(answers) if a is not None]
    failed = len(answers) - len(kept)
    if not kept:
        return Agreement(None, None, None, 0, failed, 0)
    yes = [bool(answers[i]) for i in kept]
    values = [float(maxima[i]) for i in kept]
    correlation = pearson(values, [1.0 if y else 0.0 for y in yes]) if len(kept) >= 2 else None
    accuracy, threshold = best_threshold(yes, values)
    return Agreement(correlation, accuracy, threshold, len(kept), failed, sum(yes))


@dataclass(frozen=True)
class Feedback:
    """What the proposer is told about a hypothesis tried: its measures on the proposal texts."""

    hypothesis: str
    round: int
    correlation: float | None
    balanced_accuracy: float | None


@dataclass
class Evaluation:
    """One hypothesis: the judge's answer for every text, its measures on the test texts
    (`correlation` ... `yes`) and on the proposal texts (`feedback`)."""

    hypothesis: str
    round: int
    answers: list[bool | None]
    correlation: float | None
    balanced_accuracy: float | None
    threshold: float | None
    answered: int
    failed: int
    yes: int
    failures: list[Any] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    feedback: Feedback | None = None  # None: the same texts did both jobs

    def __post_init__(self) -> None:
        if self.feedback is None:
            self.feedback = Feedback(self.hypothesis, self.round, self.correlation, self.balanced_accuracy)


def _subset(items: Sequence, indices: Sequence[int] | None) -> list:
    return list(items) if indices is None else [items[i] for i in indices]


def evaluate(
    hypothesis: str,
    round_number: int,
    records: Sequence[ActivationRecord],
    judge: Judge,
    deadline: float | None = None,
    *,
    test: Sequence[int] | None = None,
    feedback: Sequence[int] | None = None,
) -> Evaluation:
    """Ask `judge` about every text and measure the agreement with the neuron: on the `test`
    texts (indices into `records`; None: all) for the report, on the `feedback` texts for
    the proposer (None: the test texts)."""
    started = time.monotonic()
    run = judge(hypothesis, deadline)
    answers: list[bool | None] = [None] * len(records)
    for i, answer in enumerate(list(run.answers)[: len(records)]):
        answers[i] = None if answer is None else bool(answer)
    maxima = [r.max_value for r in records]
    result = agreement(_subset(answers, test), _subset(maxima, test))
    seen = None
    if feedback is not None:
        own = agreement(_subset(answers, feedback), _subset(maxima, feedback))
        seen = Feedback(hypothesis, round_number, own.correlation, own.balanced_accuracy)
    return Evaluation(
        hypothesis=hypothesis,
        round=round_number,
        answers=answers,
        correlation=result.correlation,
        balanced_accuracy=result.balanced_accuracy,
        threshold=result.threshold,
        answered=result.answered,
        failed=result.failed,
        yes=result.yes,
        failures=list(run.failures or []),
        usage=run.usage or Usage(),
        seconds=time.monotonic() - started,
        feedback=seen,
    )
