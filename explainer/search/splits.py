"""Which texts the proposer sees and which texts test its hypotheses.

A hypothesis proposed from a text fits that text by construction, so testing it there makes
its correlation, and its p-value, optimistic. The request's top texts (`activations`) are
split, seeded and deterministic: the proposer sees the `proposal` part; every hypothesis is
judged on every text, but its reported statistics (correlation, interval, p-value, Holm) are
computed on the held-out `test` part plus all the `random_test` texts (`random_activations`)
only. The proposer's feedback ("r=..." beside each hypothesis tried) and the loop's patience
use the proposal texts only, so nothing measured on the test texts steers what is proposed.

The split is stratified by each text's maximum activation, so both parts get strong and weak
texts: the strongest text goes to the proposer (it needs the best evidence), and the others,
strongest first, are taken in pairs, one of each pair to each part, by a seeded coin (an odd
one left over goes to the test part).

With too few texts to hold any out (fewer than 2 top texts, or fewer than `MIN_TEST_TEXTS`
test texts), nothing is held out: the proposer sees every top text, every text tests, the
response says so (`held_out: false`, a `note`), and no hypothesis is called significant.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from explainer.search.stats import MIN_N

MIN_TEST_TEXTS = MIN_N  # the p-value and the interval need 4 answered texts
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Splits:
    proposal: list[int]  # indices into the request's `activations`
    test: list[int]  # indices into `activations`, held out from the proposer
    random_test: list[int]  # indices into `random_activations`
    held_out: bool  # False: too few texts, every text does both jobs
    seed: int
    note: str | None = None

    def to_dict(self) -> dict:
        out = {
            "proposal": self.proposal,
            "test": self.test,
            "random_test": self.random_test,
            "held_out": self.held_out,
            "seed": self.seed,
        }
        if self.note:
            out["note"] = self.note
        return out

    def feedback_indices(self, n_top: int) -> list[int]:
        """The proposal texts, as indices into the judged list (top texts, then random ones)."""
        return list(self.proposal)

    def test_indices(self, n_top: int) -> list[int]:
        """The test texts, as indices into the judged list (top texts, then random ones)."""
        return list(self.test) + [n_top + j for j in self.random_test]


def split_texts(top_maxima: Sequence[float], n_random: int, seed: int = DEFAULT_SEED) -> Splits:
    """The split of `len(top_maxima)` top texts (their maximum activations given) and
    `n_random` random texts."""
    n_top = len(top_maxima)
    order = sorted(range(n_top), key=lambda i: (-top_maxima[i], i))
    proposal, test = order[:1], []
    rng = random.Random(seed)
    rest = order[1:]
    for k in range(0, len(rest), 2):
        pair = rest[k : k + 2]
        if len(pair) == 1:
            test.append(pair[0])
            continue
        first = rng.random() < 0.5
        proposal.append(pair[0] if first else pair[1])
        test.append(pair[1] if first else pair[0])
    available = len(test) + n_random
    if n_top >= 2 and available >= MIN_TEST_TEXTS:
        return Splits(sorted(proposal), sorted(test), list(range(n_random)), True, seed)
    everything = list(range(n_top))
    note = (
        f"too few texts to hold any out ({n_top} top and {n_random} random; a held-out test needs "
        f"at least 2 top texts and {MIN_TEST_TEXTS} texts besides those the proposer sees): every "
        "hypothesis was proposed and tested on the same texts, so its p-value is optimistic and "
        "none is called significant; send more texts, or random_activations"
    )
    return Splits(everything, everything, list(range(n_random)), False, seed, note)
