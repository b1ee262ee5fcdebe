"""The explainer's inputs: activation records, which of them to show, on what scale, and how to shorten them.

Every prompt style shares these, so the styles differ only in layout: the same texts,
the same 0-10 values, the same tokens counted as "high".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from core.records import ActivationRecord  # the project's one record type, shared with scoring
from explainer.errors import ExplainerError, NothingToExplain
from scorer.math import normalize_activations

# Lee et al. and Bills et al. show 5 top texts; callers may choose another number.
DEFAULT_TOP_K = 5

# A token is "high" when its normalised value is >= this. 1 means "any token the 0-10
# scale does not round to zero" (raw >= 10% of the neuron's maximum). It is the cutoff
# the original style already uses for its repeated non-zero lines and avhs for its list,
# and it marks exactly the tokens a simulator is rewarded for predicting above zero, so
# every style points the explainer at the same evidence the score is computed from.
# Callers with dense neurons can raise it to shorten the highlights and the lists.
DEFAULT_THRESHOLD = 1

# Texts longer than this are the first thing cut when a prompt is over budget; 64 tokens
# is the excerpt length of the paper's top and random texts.
DEFAULT_WINDOW = 64


@dataclass(frozen=True)
class NormalizedRecord:
    """A record on the prompts' 0-10 integer scale; what every style renders."""

    tokens: tuple[str, ...]
    values: tuple[int, ...]

    def is_high(self, index: int, threshold: int) -> bool:
        return self.values[index] >= threshold

    def high_indices(self, threshold: int) -> list[int]:
        return [i for i, v in enumerate(self.values) if v >= threshold]


def as_records(items: Iterable[ActivationRecord | Mapping]) -> list[ActivationRecord]:
    """Records from records or Neuronpedia-style `{tokens, values, ...}` dicts, checked:
    no empty text, every value finite (the prompts and the 0-10 scale need both)."""
    out = []
    for n, item in enumerate(items):
        if isinstance(item, Mapping):
            item = ActivationRecord(tokens=list(item["tokens"]), values=[float(v) for v in item["values"]])
        if not item.tokens:
            raise ExplainerError(f"record {n} has no tokens")
        if not all(math.isfinite(v) for v in item.values):
            raise ExplainerError(f"record {n} has a non-finite value")
        out.append(item)
    return out


def argmax(record: ActivationRecord) -> int:
    """Index of the first token holding the record's maximum."""
    values = list(record.values)
    return values.index(max(values))


def neuron_max(records: Sequence[ActivationRecord], max_activation: float | None = None) -> float:
    """The value that maps to 10: the caller's `max_activation` when given and > 0, else the
    maximum over all the texts (not only the shown ones, so trimming never rescales).

    Raises NothingToExplain when no token of any text is above zero.
    """
    observed = max((r.max_value for r in records), default=0.0)
    if not observed > 0:
        raise NothingToExplain("every activation is zero or negative; there is nothing to explain")
    if max_activation is not None and max_activation > 0:
        return float(max_activation)
    return observed


def dedupe(records: Sequence[ActivationRecord]) -> list[ActivationRecord]:
    """One record per distinct token sequence (the strongest one), in first-seen order."""
    best: dict[tuple[str, ...], ActivationRecord] = {}
    for record in records:
        key = tuple(record.tokens)
        kept = best.get(key)
        if kept is None or record.max_value > kept.max_value:
            best[key] = record
    return list(best.values())


def rank(records: Sequence[ActivationRecord]) -> list[ActivationRecord]:
    """Strongest first; ties keep the caller's order."""
    return sorted(records, key=lambda r: -r.max_value)


def select_top(records: Sequence[ActivationRecord], top_k: int = DEFAULT_TOP_K) -> list[ActivationRecord]:
    """The `top_k` distinct texts with the highest maximum activation, strongest first."""
    if top_k < 1:
        raise ExplainerError("top_k must be at least 1")
    return rank(dedupe(records))[:top_k]


def normalize(records: Sequence[ActivationRecord], max_activation: float) -> list[NormalizedRecord]:
    return [
        NormalizedRecord(tuple(r.tokens), tuple(normalize_activations(r.values, max_activation)))
        for r in records
    ]


def trim_to_window(record: ActivationRecord, window: int = DEFAULT_WINDOW) -> ActivationRecord:
    """At most `window` tokens around the record's maximum.

    Three quarters of the window go before the maximum: a causal model's activation
    depends only on the tokens up to it, so the preceding context is the evidence.
    """
    if window < 1:
        raise ExplainerError("window must be at least 1")
    n = len(record.tokens)
    if n <= window:
        return record
    before = (window * 3) // 4
    start = min(max(0, argmax(record) - before), n - window)
    end = start + window
    return ActivationRecord(list(record.tokens[start:end]), list(record.values[start:end]))


def split_explain_heldout(
    records: Sequence[ActivationRecord],
    *,
    top_k: int = DEFAULT_TOP_K,
    random_records: Sequence[ActivationRecord] = (),
    max_heldout: int | None = None,
    min_heldout: int = 1,
) -> tuple[list[ActivationRecord], list[ActivationRecord]]:
    """Texts to explain from, and texts to score candidate explanations on.

    The explain part is the top `top_k` distinct texts; the held-out part is the rest of the
    top texts (strongest first, at most `max_heldout`) followed by the caller's random or
    low texts. When there are few texts, the explain part gives up its weakest ones so
    that at least `min_heldout` top texts are held out (it always keeps one).
    Random texts that repeat an explained text are dropped from the held-out part.
    """
    ranked = rank(dedupe(records))
    if not ranked:
        return [], []
    n_explain = min(top_k, len(ranked))
    n_explain = max(1, min(n_explain, len(ranked) - min_heldout))
    explain_part = ranked[:n_explain]
    rest = ranked[n_explain:]
    if max_heldout is not None:
        rest = rest[:max_heldout]
    shown = {tuple(r.tokens) for r in explain_part} | {tuple(r.tokens) for r in rest}
    extra = [r for r in dedupe(random_records) if tuple(r.tokens) not in shown]
    return explain_part, rest + extra
