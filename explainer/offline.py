"""The offline explainer: no LLM, a description read straight off the activation pattern.

It names the tokens that carry most of the activation and, when the activating tokens are
mostly preceded by the same token, that context. It says only what the numbers show
("the token "of" after "because"", "tokens such as "red", "blue""), never a guessed
concept, and the same input always gives the same words.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from explainer.records import DEFAULT_THRESHOLD, ActivationRecord, neuron_max, normalize
from explainer.styles.base import render_token

MAX_LISTED = 3
# Tokens are listed until they hold this share of the activation; then the explanation
# says "the tokens ...", and if three do not get there, only "tokens such as ...".
ENOUGH_SHARE = 0.8
# A token "dominates" when it holds this share alone, and a preceding token is worth
# naming when this share of the activation comes right after it.
DOMINANT_SHARE = 0.5
CONTEXT_SHARE = 0.5


@dataclass(frozen=True)
class _Hit:
    key: str
    previous: str | None
    weight: float


def explain_offline(
    records: Sequence[ActivationRecord],
    *,
    max_activation: float | None = None,
    threshold: int = DEFAULT_THRESHOLD,
) -> str:
    """A short, deterministic explanation of the neuron behind `records`.

    Raises explainer.errors.NothingToExplain when no token activates.
    """
    hits = _hits(records, neuron_max(records, max_activation), threshold)
    total = sum(h.weight for h in hits)
    tokens = _ranked(hits, lambda h: h.key)
    listed, concentrated = _pick(tokens, total)
    dominant = tokens[0][1] >= DOMINANT_SHARE * total

    context = None
    before = _ranked([h for h in hits if h.previous is not None], lambda h: h.previous)
    if before:
        previous, weight = before[0]
        count = sum(1 for h in hits if h.previous == previous)
        if weight >= CONTEXT_SHARE * total and count >= 2 and previous not in listed:
            context = previous

    if context is not None and not dominant:
        # Many different tokens, one shared context: the context is the finding, and
        # the examples are taken from the tokens that follow it.
        after = [h for h in hits if h.previous == context]
        examples, _ = _pick(_ranked(after, lambda h: h.key), sum(h.weight for h in after), at_least=2)
        return f'tokens after "{context}", such as {_quote(examples)}'
    noun = "the token" if len(listed) == 1 else ("the tokens" if concentrated else "tokens such as")
    return f"{noun} {_quote(listed)}" + (f' after "{context}"' if context is not None else "")


def _pick(
    ranked: Sequence[tuple[str, float]], total: float, at_least: int = 1
) -> tuple[list[str], bool]:
    """The strongest keys until they hold ENOUGH_SHARE of `total` (at least `at_least` of
    them where there are that many, at most MAX_LISTED), and whether they got there."""
    listed: list[str] = []
    held = 0.0
    for key, weight in ranked[:MAX_LISTED]:
        if held >= ENOUGH_SHARE * total and len(listed) >= at_least:
            break
        listed.append(key)
        held += weight
    return listed, held >= ENOUGH_SHARE * total


def _quote(keys: Sequence[str]) -> str:
    return ", ".join(f'"{key}"' for key in keys)


def _key(token: str) -> str:
    """Tokens that differ only in case or surrounding spaces count as one."""
    return render_token(token.strip() or token).casefold()


def _previous(tokens: Sequence[str], i: int) -> str | None:
    """The key of the token before position i; a whitespace token is no context to name."""
    if i == 0 or not tokens[i - 1].strip():
        return None
    return _key(tokens[i - 1])


def _hits(records: Sequence[ActivationRecord], max_activation: float, threshold: int) -> list[_Hit]:
    """Every high token with the token before it; weighted by its 0-10 value.

    When nothing reaches the threshold (a caller's max_activation far above these texts),
    every positive token counts, weighted by its raw value, rather than saying nothing.
    """
    hits = []
    for record, scaled in zip(records, normalize(records, max_activation)):
        for i, value in enumerate(scaled.values):
            if value >= threshold:
                previous = _previous(record.tokens, i)
                hits.append(_Hit(_key(record.tokens[i]), previous, float(value)))
    if hits:
        return hits
    for record in records:
        for i, value in enumerate(record.values):
            if value > 0:
                previous = _previous(record.tokens, i)
                hits.append(_Hit(_key(record.tokens[i]), previous, value))
    return hits


def _ranked(hits: Sequence[_Hit], key_of) -> list[tuple[str, float]]:
    """Keys by total weight, then by their strongest single hit, then alphabetically."""
    total: dict[str, float] = defaultdict(float)
    peak: dict[str, float] = defaultdict(float)
    for hit in hits:
        key = key_of(hit)
        total[key] += hit.weight
        peak[key] = max(peak[key], hit.weight)
    return sorted(total.items(), key=lambda kv: (-kv[1], -peak[kv[0]], kv[0]))
