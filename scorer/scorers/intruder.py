"""Intruder: is the latent itself interpretable? No explanation is read.

In each of `rounds` rounds (default 10) the judge sees `activating_per_round`
(default 4) texts on which the latent activates and one on which it does not (the
intruder), in a seeded random order, and names the odd one out. In the
activating texts the activating tokens are marked `<<like this>>` (a token, or a
text whose max, reaches `activation_threshold` x the request's max, as in
fuzzing); the intruder gets as many marks on tokens chosen at random, so that the
marks alone do not give it away, and a latent that fires on one kind of token in
unrelated texts can still be recognised. The score is the share of answered
rounds in which the judge found the intruder: 1 when what the latent's texts
share is plain to a reader, 1 / (activating_per_round + 1) (chance) when nothing
is. It says how interpretable the latent is, not how good an explanation is: the
request's explanation is ignored, and the details say so.

The intruders are the texts below the cut; when there are none, the lowest fifth
of the texts by max activation stands in (details: `intruder_source`). Rounds,
texts, order and marks depend only on the records and `seed`. A round whose
answer is unreadable after one re-ask is listed in `failures` (its `index` null,
its reason naming the round) and left out, never counted as wrong.

Offline (`OfflineJudge`: the offline simulator) each text in a round is checked
against the others: the marked words of the other texts are given to the
simulator as the explanation, and the text whose own marked tokens it predicts
lowest is named (ties broken by the round's seed, as a guess).
"""
from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.parallel import run_parallel
from core.records import ActivationRecord
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer.judge import render_text
from scorer.scorers.asking import Answer, Unreadable, ask
from scorer.scorers.base import ScorerInputError, ScorerResult, request_max, scored_by
from scorer.scorers.detection import DEFAULT_ACTIVATION_THRESHOLD
from scorer.simulators.base import TextFailure

METRIC = "intruder_accuracy"
VERSION = "1"
DEFAULT_ROUNDS = 10
DEFAULT_ACTIVATING_PER_ROUND = 4
NON_ACTIVATING, LOWEST_FIFTH = "non_activating", "lowest_fifth"
MEASURES = (
    "whether the latent is interpretable: can a reader pick out a text on which it does not "
    "activate among texts on which it does; the request's explanation is not used"
)

SYSTEM_PROMPT = (
    "You find the odd one out. You are given several numbered texts with some tokens marked "
    "<<like this>>. In all the texts but one, the marks are where one feature of a language model "
    "is active, so the marked tokens (with their context) have something in common. In the one "
    "other text the marks are on tokens chosen at random. Find that text.\n\n"
    "Answer with one line, Odd one: N, where N is the number of that text. Write nothing else."
)


@dataclass(frozen=True)
class Round:
    texts: tuple[int, ...]  # request indices, in the order shown
    intruder: int  # its request index
    marks: tuple[tuple[bool, ...], ...]  # per shown text


@dataclass(frozen=True)
class Plan:
    rounds: tuple[Round, ...]
    activating: tuple[int, ...]
    intruders: tuple[int, ...]
    source: str
    per_round: int
    cut: float


def plan_rounds(
    records: Sequence[ActivationRecord], fraction: float, rounds: int, per_round: int, seed: int
) -> Plan:
    """Which texts each round shows, in which order, with which marks. Pure: same input, same plan.

    Raises ScorerInputError when fewer than 2 activating texts, or no intruder, can be shown.
    """
    top = request_max(records)
    if not top > 0:
        raise ScorerInputError(
            "intruder needs texts on which the neuron activates: no value is above 0; "
            "add texts on which the neuron activates"
        )
    cut = fraction * top
    activating = [i for i, r in enumerate(records) if r.max_value >= cut]
    intruders = [i for i, r in enumerate(records) if r.max_value < cut]
    source = NON_ACTIVATING
    if not intruders:
        by_max = sorted(range(len(records)), key=lambda i: (records[i].max_value, i))
        intruders = sorted(by_max[: max(1, len(records) // 5)])
        activating = [i for i in activating if i not in intruders]
        source = LOWEST_FIFTH
    if len(activating) < 2:
        raise ScorerInputError(
            f"intruder needs at least 2 activating texts (max activation >= {cut:.4g}) and one "
            f"other; {len(activating)} activating given: add texts on which the neuron activates"
        )
    n = min(per_round, len(activating))
    rng = random.Random(seed)
    order = list(intruders)
    rng.shuffle(order)
    planned = []
    for r in range(rounds):
        shown = rng.sample(activating, n)
        intruder = order[r % len(order)]
        position = rng.randrange(n + 1)
        texts = shown[:position] + [intruder] + shown[position:]
        true_marks = {i: tuple(v >= cut for v in records[i].values) for i in shown}
        count = int(statistics.median(sum(true_marks[i]) for i in shown))
        length = len(records[intruder].tokens)
        picked = set(rng.sample(range(length), max(1, min(count, length))))
        marks = tuple(
            tuple(j in picked for j in range(length)) if i == intruder else true_marks[i] for i in texts
        )
        planned.append(Round(texts=tuple(texts), intruder=intruder, marks=marks))
    return Plan(tuple(planned), tuple(activating), tuple(intruders), source, n, cut)


# -- the LLM judge ---------------------------------------------------------------------


def render_question(records: Sequence[ActivationRecord], round_: Round) -> str:
    return "\n".join(
        f"Text {n}: {render_text(records[i].tokens, list(marks))}"
        for n, (i, marks) in enumerate(zip(round_.texts, round_.marks), start=1)
    )


def build_messages(records: Sequence[ActivationRecord], round_: Round) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": render_question(records, round_)},
    ]


_ANSWER = re.compile(
    r"^[\s*`_#>]*(?:odd\s+one(?:\s+out)?\s*[:=]?\s*)?[\s*`_]*(?:text\s*)?(\d+)[\s*`_.]*$", re.IGNORECASE
)


def read_choice(reply: str) -> tuple[int, int]:
    """The number in a reply such as `Odd one: 3` (or `3`, `Text 3`), and where it starts."""
    match = _ANSWER.match(reply.strip())
    if match is None:
        raise Unreadable(f"{reply.strip()[:40]!r} is not 'Odd one: N'")
    start = len(reply) - len(reply.lstrip())
    return int(match.group(1)), start + match.start(1)


# -- offline ---------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def marked_words(tokens: Sequence[str], marks: Sequence[bool]) -> list[str]:
    return [w for t, m in zip(tokens, marks) if m for w in _WORD.findall(t)]


def offline_guess(records, round_: Round, simulator, seed: str, deadline) -> tuple[int | None, list[float]]:
    """The position the offline simulator names as the odd one (None when it failed on a
    text of the round), and each position's fit.

    A text's fit is the simulator's mean prediction (0-10) on its marked tokens, given
    the other texts' marked words as the explanation; the lowest fit is the guess, and
    among equal fits the round's seed picks, as a guess would.
    """
    fits = []
    for k, (i, marks) in enumerate(zip(round_.texts, round_.marks)):
        others = [
            w
            for j, (other, other_marks) in enumerate(zip(round_.texts, round_.marks))
            if j != k
            for w in marked_words(records[other].tokens, other_marks)
        ]
        explanation = ", ".join(dict.fromkeys(others))
        if not explanation:
            fits.append(0.0)
            continue
        run = simulator.simulate(explanation, [records[i].tokens], deadline=deadline)
        simulation = run.simulations[0] if run.simulations else None
        if run.failures or simulation is None or len(simulation.expected_activations) != len(marks):
            return None, fits
        predicted = np.asarray(simulation.expected_activations, dtype=np.float64)
        fits.append(float(predicted[np.asarray(marks, dtype=bool)].mean()))
    lowest = min(fits)
    tied = [k for k, f in enumerate(fits) if f == lowest]
    return random.Random(seed).choice(tied), fits


class IntruderScorer:
    name = "intruder"
    metric = METRIC

    def __init__(
        self,
        judge,
        *,
        activation_threshold: float = DEFAULT_ACTIVATION_THRESHOLD,
        rounds: int = DEFAULT_ROUNDS,
        activating_per_round: int = DEFAULT_ACTIVATING_PER_ROUND,
        seed: int = 0,
    ) -> None:
        self.judge = judge
        self.activation_threshold = activation_threshold
        self.rounds = rounds
        self.activating_per_round = activating_per_round
        self.seed = seed
        self.scored_by = scored_by(judge)

    def _ask(self, records, rounds: Sequence[Round], deadline) -> list[Answer]:
        def one(round_: Round) -> Answer:
            numbers = tuple(range(1, len(round_.texts) + 1))
            messages = build_messages(records, round_)
            return ask(
                self.judge, f"intruder/v{VERSION}", messages, read_choice, numbers, max_tokens=12, deadline=deadline
            )

        # The rounds are independent: asked in parallel, as many at once as the judge allows.
        return run_parallel(one, list(rounds), getattr(self.judge, "concurrency", 8), deadline)

    def _offline(self, records, rounds: Sequence[Round], deadline) -> list[Answer]:
        answers = []
        for r, round_ in enumerate(rounds):
            position, _ = offline_guess(records, round_, self.judge.simulator, f"{self.seed}:{r}", deadline)
            if position is None:
                answers.append(Answer(value=None, reason="the offline simulator failed on a text of the round"))
            else:
                answers.append(Answer(value=position + 1))
        return answers

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        records = list(records)
        plan = plan_rounds(records, self.activation_threshold, self.rounds, self.activating_per_round, self.seed)
        if self.judge.offline:
            answers = self._offline(records, plan.rounds, deadline)
        else:
            answers = self._ask(records, plan.rounds, deadline)

        usage = Usage()
        failures, details_rounds, picked = [], [], [0] * len(records)
        shown = [0] * len(records)
        right = answered = 0
        probabilities: list[float] = []
        for r, (round_, answer) in enumerate(zip(plan.rounds, answers)):
            usage = usage + answer.usage
            for i in round_.texts:
                shown[i] += 1
            entry: dict = {"round": r, "texts": list(round_.texts), "intruder": round_.intruder}
            if answer.value is None:
                # A round is no text: its failure names the round, and points at no text.
                failures.append(TextFailure(index=None, reason=f"round {r}: {answer.reason}"))  # type: ignore[arg-type]
                entry.update(answer=None, correct=None, probability=None)
            else:
                named = round_.texts[answer.value - 1]
                picked[named] += 1
                correct = named == round_.intruder
                answered += 1
                right += correct
                p = None
                if answer.distribution is not None:
                    p = answer.distribution.get(round_.texts.index(round_.intruder) + 1, 0.0)
                    probabilities.append(p)
                entry.update(answer=named, correct=correct, probability=p)
            details_rounds.append(entry)
        if not answered:
            reasons = "; ".join(f.reason for f in failures[:3])
            raise UpstreamError(f"the intruder judge failed in every round: {reasons}")

        intruders = set(plan.intruders)
        per_text = [
            {
                "index": i,
                "label": "intruder" if i in intruders else "activating",
                "max_activation": float(record.max_value),
                "rounds_shown": shown[i],
                "named_odd_one": picked[i],
            }
            for i, record in enumerate(records)
        ]
        return ScorerResult(
            score=right / answered,
            metric=self.metric,
            per_text=per_text,
            failures=failures,
            usage=usage,
            details={
                "texts_scored": sum(1 for s in shown if s),
                "measures": MEASURES,
                "explanation_used": False,
                "rounds": len(plan.rounds),
                "rounds_answered": answered,
                "activating_per_round": plan.per_round,
                "chance": 1 / (plan.per_round + 1),
                "expected_accuracy": (
                    sum(probabilities) / len(probabilities) if probabilities and len(probabilities) == answered else None
                ),
                "activation_threshold": self.activation_threshold,
                "activation_cut": plan.cut,
                "intruder_source": plan.source,
                "seed": self.seed,
                "round_details": details_rounds,
            },
        )
