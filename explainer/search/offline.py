"""The offline proposer: hypotheses read off the activation pattern, with no LLM.

Its hypotheses are token-set conditions, `the text mentions "fox" or "leopard"`, over the
neuron's high tokens ranked by the activation they carry (as the offline explainer ranks
them). Round 1 offers the strongest few together (what the offline explainer would name)
and then each strong token alone; later rounds take the best-scoring set tried so far and
offer it with one more token, and with one token fewer: a greedy search over token sets
that the feedback steers. The offline judge (the offline simulator) answers these exactly,
so the whole search runs out of the box and always gives the same answer.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

from explainer.offline import explain_offline
from explainer.records import DEFAULT_THRESHOLD, ActivationRecord, normalize, select_top
from explainer.search.propose import Cost, Proposal, Scored
from explainer.search.report import rank_key

MAX_TOKENS_CONSIDERED = 12  # the strongest high tokens the sets are built from
FIRST_SET_SIZE = 3  # the offline explainer lists up to three tokens
_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d')


def high_tokens(records: Sequence[ActivationRecord], scale: float, threshold: int) -> list[str]:
    """Distinct high tokens (stripped, case-folded), by the total 0-10 activation they carry,
    then their strongest single value, then alphabetically."""
    total: dict[str, float] = defaultdict(float)
    peak: dict[str, float] = defaultdict(float)
    for record, scaled in zip(records, normalize(records, scale)):
        for token, value in zip(record.tokens, scaled.values):
            key = " ".join(token.split()).casefold()
            # Whitespace has no quotable form in a one-line condition; a key holding both
            # kinds of quotes cannot be quoted either, nor one that is not Unicode text (a lone
            # surrogate, which JSON lets a token carry): an explanation must be text /score takes.
            if value < threshold or not key or ('"' in key and "\u201d" in key) or not _is_text(key):
                continue
            total[key] += value
            peak[key] = max(peak[key], value)
    ranked = sorted(total, key=lambda k: (-total[k], -peak[k], k))
    return ranked[:MAX_TOKENS_CONSIDERED]


def _is_text(token: str) -> bool:
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _quote(token: str) -> str:
    return f"\u201c{token}\u201d" if '"' in token else f'"{token}"'


def condition(tokens: Sequence[str]) -> str:
    quoted = [_quote(t) for t in tokens]
    if len(quoted) == 1:
        return f"the text mentions {quoted[0]}"
    return f"the text mentions {', '.join(quoted[:-1])} or {quoted[-1]}"


def tokens_of(hypothesis: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(hypothesis)]


class OfflineProposer:
    def __init__(
        self,
        records: Sequence[ActivationRecord],
        *,
        scale: float,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        self.tokens = high_tokens(records, scale, threshold)
        # When no high token can be quoted (only whitespace), the offline explainer's own
        # description is the one hypothesis: the search always has something to test.
        self.fallback = None if self.tokens else explain_offline(select_top(records), max_activation=scale, threshold=threshold)

    def forecast(self, tried: Sequence[Scored], n: int) -> Cost:
        return Cost()

    def candidates(self, tried: Sequence[Scored]) -> list[str]:
        order = {t: i for i, t in enumerate(self.tokens)}
        sets: list[list[str]] = []
        if not tried and self.fallback is not None:
            return [self.fallback]
        if not tried:
            if len(self.tokens) > 1:
                sets.append(self.tokens[:FIRST_SET_SIZE])
            sets += [[t] for t in self.tokens]
        else:
            best = self._best_set(tried)
            grow = [best + [t] for t in self.tokens if t not in best]
            shrink = [[t for t in best if t != out] for out in best] if len(best) > 1 else []
            sets += grow + shrink + [[t] for t in self.tokens]
        seen = {e.hypothesis for e in tried}
        out = []
        for tokens in sets:
            text = condition(sorted(tokens, key=lambda t: order.get(t, len(order))))
            if text not in seen:
                seen.add(text)
                out.append(text)
        return out

    def _best_set(self, tried: Sequence[Scored]) -> list[str]:
        known = set(self.tokens)
        ours = [e for e in tried if tokens_of(e.hypothesis) and set(tokens_of(e.hypothesis)) <= known]
        if not ours:
            return []
        return tokens_of(min(ours, key=rank_key).hypothesis)

    def __call__(self, tried: Sequence[Scored], n: int, deadline: float | None = None) -> Proposal:
        fresh = self.candidates(tried)[:n]
        return Proposal(hypotheses=fresh, exhausted=not fresh)
