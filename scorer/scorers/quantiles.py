"""Where an explanation fails: a scorer's result broken down by how strongly each text activates.

The texts are put in `BINS` equal bins of their max activation, as a fraction of
the request's max (bin 0: below a fifth of it, ..., bin 4: the top fifth; a
text whose max is at or below 0 goes to bin 0). Per bin a classifier reports the
share of its answers that were right, and the simulation scorer the correlation
of simulated with true activations pooled over the bin's texts. An explanation
that names only the strongest tokens shows up as good top bins and poor middle
ones; one that fires everywhere, as a poor bottom bin.

A breakdown is given only when the texts span activation levels (two bins or
more hold a text); otherwise it is None. Pure functions, no I/O.
"""
from __future__ import annotations

from typing import Sequence

from core.records import ActivationRecord
from scorer import math

BINS = 5


def bin_of(max_value: float, top: float, bins: int = BINS) -> int:
    """The bin of a text whose max activation is `max_value`, in a request whose max is `top`."""
    if not top > 0 or not max_value > 0:
        return 0
    return min(int(bins * (max_value / top)), bins - 1)  # the ratio first: no overflow near the float max


def _bins(records: Sequence[ActivationRecord], included: Sequence[bool], bins: int) -> tuple[float, list[list[int]]]:
    top = max((r.max_value for r in records), default=0.0)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, (record, keep) in enumerate(zip(records, included)):
        if keep:
            members[bin_of(record.max_value, top, bins)].append(i)
    return top, members


def _spans(members: Sequence[Sequence[int]]) -> bool:
    return sum(1 for m in members if m) >= 2


def _entry(k: int, bins: int, top: float, indices: Sequence[int]) -> dict:
    return {
        "bin": k,
        "low": top / bins * k if top > 0 else 0.0,
        "high": top / bins * (k + 1) if top > 0 else 0.0,
        "texts": len(indices),
    }


def accuracy_by_bin(
    records: Sequence[ActivationRecord],
    correct: Sequence[bool | None],
    *,
    judged: Sequence[bool] | None = None,
    probabilities: Sequence[float | None] | None = None,
    bins: int = BINS,
) -> list[dict] | None:
    """Per bin: the texts judged, those answered, the share answered rightly (None when none was).

    `correct[i]` is None where text i has no usable answer (left out, never wrong);
    `judged` leaves out texts the scorer did not show (fuzzing judges activating
    texts only). With `probabilities` (the judge's P(yes)), each bin also gets
    their mean where every answered text has one.
    """
    judged = list(judged) if judged is not None else [True] * len(records)
    top, members = _bins(records, judged, bins)
    if not _spans(members):
        return None
    out = []
    for k, indices in enumerate(members):
        answered = [i for i in indices if correct[i] is not None]
        entry = _entry(k, bins, top, indices)
        entry["texts_scored"] = len(answered)
        entry["accuracy"] = sum(1 for i in answered if correct[i]) / len(answered) if answered else None
        if probabilities is not None:
            ps = [probabilities[i] for i in answered]
            entry["mean_probability"] = sum(ps) / len(ps) if ps and all(p is not None for p in ps) else None
        out.append(entry)
    return out


def correlation_by_bin(
    records: Sequence[ActivationRecord],
    predicted: Sequence[Sequence[float] | None],
    bins: int = BINS,
) -> list[dict] | None:
    """Per bin: the texts, those simulated, and the pooled correlation of their true and
    simulated activations (None where undefined, e.g. a bin of all-zero texts).

    `predicted[i]` is None where text i failed (left out). Beside the correlation,
    the mean of the simulated maxima (0-10) says whether the explanation fires on a
    bin where the correlation cannot tell (a bin of texts that never activate).
    """
    top, members = _bins(records, [True] * len(records), bins)
    if not _spans(members):
        return None
    out = []
    for k, indices in enumerate(members):
        scored = [i for i in indices if predicted[i] is not None]
        entry = _entry(k, bins, top, indices)
        entry["texts_scored"] = len(scored)
        entry["correlation"] = (
            math.pooled_correlation([records[i].values for i in scored], [predicted[i] for i in scored])
            if scored
            else None
        )
        entry["mean_simulated_max"] = (
            sum(max(predicted[i], default=0.0) for i in scored) / len(scored) if scored else None
        )
        out.append(entry)
    return out
