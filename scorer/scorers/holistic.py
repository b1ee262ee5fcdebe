"""Holistic: one judge call rates how much of a latent's top activations an explanation accounts for.

The judge sees the explanation and the `top_k` texts (default 12) on which the
latent activates most, each with its active tokens marked `<<like this>>` and their
strengths (1-10, as a fraction of the request's max) listed under it, and answers a
level on the written rubric `RUBRIC`: 0 unrelated ... 4 explains every text,
including the weak activations. Where the backend returns top logprobs the score is
the probability-weighted level / 4, else the level / 4; the details carry the
level distribution either way (one level with probability 1 without logprobs).

Unlike the per-text scorers this one reads the texts together, as a person rating
an explanation would, and it needs no non-activating texts. One call a score; an
unreadable answer is asked again once, then the score fails (502), never reads as 0.

Offline (`OfflineJudge`: the offline simulator) the level comes from the simulator's
predictions on the same texts, by the rubric's own counts (`offline_level`).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from core.records import ActivationRecord
from core.text import render_token
from llm.errors import UpstreamError
from scorer import math
from scorer.judge import render_text
from scorer.scorers.asking import Unreadable, ask
from scorer.scorers.base import ScorerInputError, ScorerResult, request_max, scored_by
from scorer.simulators.prompts import clean_explanation

METRIC = "rubric_level"
VERSION = "1"
DEFAULT_TOP_K = 12
LEVELS = (0, 1, 2, 3, 4)
TOP_LEVEL = LEVELS[-1]
# A token counts as active (marked) from this normalised strength (1-10 of the request's max).
MARK_FROM = 1
# Of a text's marked tokens, those at or above this fraction of the text's own max are its
# strong ones; the rest are its weak activations.
STRONG_FRACTION = 0.5

RUBRIC = {
    0: "unrelated: it describes nothing the marked tokens have in common",
    1: "weak: it fits a few of the texts, or fits them only loosely",
    2: "partial: it fits about half of the texts",
    3: "good: it accounts for the strong activations in most texts, but misses some texts or the weaker activations",
    4: "complete: it accounts for every text, including the weak activations",
}

SYSTEM_PROMPT = (
    "You rate how well an explanation accounts for where a neuron of a language model activates. "
    "You are given the explanation and the texts on which the neuron activates most. In each text "
    "the tokens on which it activates are marked <<like this>>, and the line under the text gives "
    "each marked token's activation, from 1 (weak) to 10 (its strongest).\n\n"
    "Rate the explanation on this scale:\n"
    + "\n".join(f"{level}: {text}." for level, text in RUBRIC.items())
    + "\n\nAnswer with one line, Level: N, where N is 0, 1, 2, 3 or 4. Write nothing else."
)


def top_texts(records: Sequence[ActivationRecord], top_k: int) -> list[int]:
    """The indices of the `top_k` texts with the highest max activation (ties: request order),
    in request order; only texts with a token to mark (strength `MARK_FROM` or more).

    Raises ScorerInputError when no text activates: there is nothing to explain.
    """
    top = request_max(records)
    active = [i for i, r in enumerate(records) if top > 0 and max(strengths(r, top)) >= MARK_FROM]
    if not active:
        raise ScorerInputError(
            "holistic needs texts on which the neuron activates: no value is above 0; "
            "add texts on which the neuron activates"
        )
    return sorted(sorted(active, key=lambda i: -records[i].max_value)[:top_k])


def strengths(record: ActivationRecord, top: float) -> list[int]:
    """Each token's strength 0-10 as a fraction of the request's max: floor(10 x value / max)."""
    return math.normalize_activations(record.values, top)


def _strength_line(tokens: Sequence[str], levels: Sequence[int]) -> str:
    items = []
    for token, level in zip(tokens, levels):
        if level >= MARK_FROM:
            shown = render_token(token)
            items.append(f'"{shown.strip() or shown}" {level}')
    return "Activations: " + ", ".join(items)


def render_question(explanation: str, texts: Sequence[Sequence[str]], levels: Sequence[Sequence[int]]) -> str:
    lines = [f"Explanation: {clean_explanation(explanation)}"]
    for n, (tokens, strength) in enumerate(zip(texts, levels), start=1):
        marks = [s >= MARK_FROM for s in strength]
        lines += ["", f"Text {n}: {render_text(tokens, marks)}", _strength_line(tokens, strength)]
    return "\n".join(lines)


def build_messages(explanation: str, texts: Sequence[Sequence[str]], levels: Sequence[Sequence[int]]) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": render_question(explanation, texts, levels)},
    ]


_ANSWER = re.compile(r"^[\s*`_#>]*(?:level\s*[:=]?\s*)?[\s*`_]*(\d+)[\s*`_.]*$", re.IGNORECASE)


def read_level(reply: str) -> tuple[int, int]:
    """The level of a reply such as `Level: 3` (or `3`, `**Level: 3**`), and where its digit is.

    Anything else, a reason after the level included, is Unreadable.
    """
    match = _ANSWER.match(reply.strip())
    if match is None:
        raise Unreadable(f"{reply.strip()[:40]!r} is not 'Level: N'")
    start = len(reply) - len(reply.lstrip())
    return int(match.group(1)), start + match.start(1)


def expected_level(distribution: dict[int, float]) -> float:
    return float(sum(level * p for level, p in distribution.items()))


# -- offline ---------------------------------------------------------------------------


def offline_level(
    records: Sequence[ActivationRecord], levels: Sequence[Sequence[int]], predicted: Sequence[Sequence[float]], threshold: float
) -> tuple[int, list[dict], dict]:
    """The rubric's level from a simulator's predictions (0-10) on the shown texts.

    A text is explained when the prediction reaches `threshold` on one of its strong
    tokens (at least half the text's max) and at least half of the tokens it lights
    are marked (it does not fire all over the text). Then, with f the share of texts
    explained: 0 when no strong token is lit anywhere, 1 when f < 1/2, 2 when
    f < 4/5, 3 when some text is unexplained or fewer than half of the weak marked
    tokens are lit, 4 otherwise: the rubric's "a few", "about half", "most", "every
    text, including the weak activations".
    """
    per_text, any_hit, weak, weak_lit = [], False, 0, 0
    for record, strength, values in zip(records, levels, predicted):
        marked = np.asarray(strength) >= MARK_FROM
        high = np.asarray(values, dtype=np.float64) >= threshold
        strong = marked & (np.asarray(record.values, dtype=np.float64) >= STRONG_FRACTION * record.max_value)
        hit = bool((strong & high).any())
        lit = int(high.sum())
        precise = lit > 0 and int((high & marked).sum()) * 2 >= lit
        weak_tokens = marked & ~strong
        weak += int(weak_tokens.sum())
        weak_lit += int((weak_tokens & high).sum())
        any_hit = any_hit or hit
        per_text.append({"peak_lit": hit, "precise": precise, "explained": hit and precise})
    explained = sum(t["explained"] for t in per_text) / len(per_text)
    weak_coverage = weak_lit / weak if weak else None
    if not any_hit:
        level = 0
    elif explained < 0.5:
        level = 1
    elif explained < 0.8:
        level = 2
    elif explained < 1 or (weak_coverage is not None and weak_coverage < 0.5):
        level = 3
    else:
        level = 4
    return level, per_text, {"texts_explained": explained, "weak_tokens_lit": weak_coverage}


class HolisticScorer:
    name = "holistic"
    metric = METRIC

    def __init__(self, judge, *, top_k: int = DEFAULT_TOP_K) -> None:
        self.judge = judge
        self.top_k = top_k
        self.scored_by = scored_by(judge)

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        records = list(records)
        shown = top_texts(records, self.top_k)
        top = request_max(records)
        levels = [strengths(records[i], top) for i in shown]
        texts = [records[i].tokens for i in shown]
        offline_texts: dict[int, dict] = {}
        extra: dict = {}
        if self.judge.offline:
            run = self.judge.simulator.simulate(explanation, texts, deadline=deadline)
            if run.failures or len(run.simulations) != len(texts) or any(s is None for s in run.simulations):
                raise UpstreamError("the offline simulator failed on a shown text")
            level, flags, extra = offline_level(
                [records[i] for i in shown],
                levels,
                [s.expected_activations for s in run.simulations],
                self.judge.threshold,
            )
            offline_texts = dict(zip(shown, flags))
            distribution = {lv: float(lv == level) for lv in LEVELS}
            from_logprobs = False
            usage = run.usage
        else:
            answer = ask(
                self.judge,
                f"holistic/v{VERSION}",
                build_messages(explanation, texts, levels),
                read_level,
                LEVELS,
                max_tokens=12,
                deadline=deadline,
            )
            if answer.value is None:
                raise UpstreamError(f"the holistic judge gave no usable level: {answer.reason}")
            level = answer.value
            from_logprobs = answer.distribution is not None
            distribution = answer.distribution or {lv: float(lv == level) for lv in LEVELS}
            usage = answer.usage
        expected = expected_level(distribution) if from_logprobs else float(level)
        per_text = []
        positions = {i: k for k, i in enumerate(shown)}
        for i, record in enumerate(records):
            entry: dict = {"index": i, "max_activation": float(record.max_value), "shown": i in positions}
            if i in positions:
                entry["marked"] = [j for j, s in enumerate(levels[positions[i]]) if s >= MARK_FROM]
                entry.update(offline_texts.get(i, {}))
            per_text.append(entry)
        return ScorerResult(
            score=expected / TOP_LEVEL,
            metric=self.metric,
            per_text=per_text,
            usage=usage,
            details={
                "texts_scored": len(shown),
                "top_k": self.top_k,
                "level": level,
                "expected_level": expected,
                "level_distribution": {str(lv): distribution.get(lv, 0.0) for lv in LEVELS},
                "from_logprobs": from_logprobs,
                "rubric": {str(lv): text for lv, text in RUBRIC.items()},
                **extra,
            },
        )
