"""scorer/math.py against the reference implementation, to 1e-9.

The reference is the PyPI package automated-interpretability==0.0.24 (MIT, module
``neuron_explainer``): explanations/scoring.py (correlation_score,
score_from_simulation, rsquared_score_from_sequences,
absolute_dev_explained_score_from_sequences, simulate_and_score,
aggregate_scored_sequence_simulations) and activations/activation_records.py
(relu, calculate_max_activation, normalize_activations, _format_activation_record).

It is a dev-only oracle, installed by (see requirements-dev-oracle.txt):

    pip install -r requirements-dev-oracle.txt
    pip install --no-deps -r requirements-dev-oracle-nodeps.txt

Where the reference is undefined it returns NaN (np.corrcoef of a constant vector,
0/0 for an all-zero truth) or -inf (x/0 for an all-zero truth with a non-zero
prediction); there we require None.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import zlib
from collections import defaultdict, deque
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

pytest.importorskip(
    "neuron_explainer",
    reason=(
        "reference implementation not installed: pip install -r requirements-dev-oracle.txt "
        "&& pip install --no-deps -r requirements-dev-oracle-nodeps.txt"
    ),
)

# Present but broken (a dependency missing) should fail loudly, not skip.
from neuron_explainer.activations import activation_records as ref_records  # noqa: E402
from neuron_explainer.activations.activations import ActivationRecord  # noqa: E402
from neuron_explainer.explanations import scoring as ref_scoring  # noqa: E402
from neuron_explainer.explanations.explanations import (  # noqa: E402
    ActivationScale,
    ScoredSequenceSimulation,
    SequenceSimulation,
)
from neuron_explainer.explanations.simulator import NeuronSimulator  # noqa: E402

from scorer.math import (  # noqa: E402
    absolute_dev_explained,
    normalize_activations,
    pearson,
    pooled_correlation,
    rsquared,
)

# The reference divides by zero and takes corrcoef of constants; numpy warns.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

TOL = 1e-9


def assert_matches(ours: float | None, theirs: float | None, context: object = "") -> None:
    """Ours equals the reference to TOL; where the reference is NaN/inf/None, ours is None."""
    if theirs is None or not math.isfinite(theirs):
        assert ours is None, f"reference undefined ({theirs}), ours {ours!r}: {context}"
        return
    assert ours is not None, f"reference {theirs!r}, ours None: {context}"
    assert type(ours) is float
    assert abs(ours - theirs) <= TOL, f"ours {ours!r} != reference {theirs!r}: {context}"


def sequence_simulation(tokens: Sequence[str], predicted: Sequence[float]) -> SequenceSimulation:
    return SequenceSimulation(
        tokens=list(tokens),
        expected_activations=[float(x) for x in predicted],
        activation_scale=ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS,
        distribution_values=[[] for _ in tokens],
        distribution_probabilities=[[] for _ in tokens],
    )


class ReplaySimulator(NeuronSimulator):
    """A reference NeuronSimulator that answers with fixed predictions, keyed by tokens."""

    def __init__(self, records: Sequence[ActivationRecord], predictions: Sequence[Sequence[float]]):
        self._answers: dict[tuple[str, ...], deque] = defaultdict(deque)
        for record, predicted in zip(records, predictions, strict=True):
            self._answers[tuple(record.tokens)].append(predicted)

    async def simulate(self, tokens: Sequence[str]) -> SequenceSimulation:
        return sequence_simulation(tokens, self._answers[tuple(tokens)].popleft())


def reference_simulate_and_score(records, predictions):
    """The reference's whole scoring path: simulate_and_score -> score_from_simulation per
    sequence -> aggregate_scored_sequence_simulations over all sequences."""
    return asyncio.run(
        ref_scoring.simulate_and_score(ReplaySimulator(records, predictions), records)
    )


def check_scored_simulation(scored) -> dict[str, int]:
    """Compare every per-sequence and pooled score of a reference ScoredSimulation with ours,
    on the very (true, predicted) pairs the reference scored. Returns how many were None."""
    nones = {"per_sequence": 0, "pooled": 0}
    trues, predicteds = [], []
    for i, seq in enumerate(scored.scored_sequence_simulations):
        t, p = seq.true_activations, seq.simulation.expected_activations
        trues.append(t)
        predicteds.append(p)
        ctx = (i, t, p)
        assert_matches(pearson(t, p), seq.ev_correlation_score, ctx)
        assert_matches(rsquared(t, p), seq.rsquared_score, ctx)
        assert_matches(absolute_dev_explained(t, p), seq.absolute_dev_explained_score, ctx)
        nones["per_sequence"] += pearson(t, p) is None
    flat_t = [x for t in trues for x in t]
    flat_p = [x for p in predicteds for x in p]
    pooled = pooled_correlation(trues, predicteds)
    assert_matches(pooled, scored.ev_correlation_score, "pooled correlation")
    assert_matches(rsquared(flat_t, flat_p), scored.rsquared_score, "pooled rsquared")
    assert_matches(
        absolute_dev_explained(flat_t, flat_p),
        scored.absolute_dev_explained_score,
        "pooled absolute_dev_explained",
    )
    nones["pooled"] += pooled is None
    return nones


# --- (a) the puzzles -----------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[1]
_PUZZLE_CANDIDATES = [
    # $SHARED_DATA as in tests/conftest.py, else shared/ beside the clone (as in CI).
    Path(os.environ.get("SHARED_DATA", _REPO.parent / "shared" / "data")) / "puzzles" / "puzzles.json",
    Path("/work/shared/data/puzzles/puzzles.json"),
]


def _load_puzzles() -> dict:
    for path in _PUZZLE_CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


PUZZLES = _load_puzzles()


def _puzzle_records(puzzle: dict) -> list[ActivationRecord]:
    # Items are a token (activation 0) or [token, activation]; parsed the reference's way.
    from neuron_explainer.explanations.puzzles import convert_puzzle_dict_to_puzzle

    return convert_puzzle_dict_to_puzzle(puzzle).activation_records


def _synthetic_predictions(name: str, variant: str, records, max_activation: float):
    """Deterministic predictions for a puzzle's sentences (seeded by the names)."""
    rng = np.random.default_rng(zlib.crc32(f"{name}/{variant}".encode()))
    out = []
    for record in records:
        t = np.asarray(record.activations, dtype=np.float64)
        if variant == "noisy":
            p = t + rng.normal(0.0, 1.5, t.size)
        elif variant == "shifted":  # one token late, offset: a plausibly wrong simulator
            p = np.roll(t, 1) * 0.8 + 0.5
        elif variant == "normalized":  # an ideal simulator on the 0-10 scale
            p = np.asarray(normalize_activations(t, max_activation), dtype=np.float64)
        elif variant == "sparse_noise":  # mostly zeros, a few random hits
            p = np.where(rng.random(t.size) < 0.15, rng.uniform(0, 10, t.size), 0.0)
        elif variant == "exact":
            p = t.copy()
        else:
            raise AssertionError(variant)
        out.append(p.tolist())
    return out


VARIANTS = ["noisy", "shifted", "normalized", "sparse_noise", "exact"]


@pytest.mark.skipif(not PUZZLES, reason="shared/data/puzzles/puzzles.json not found")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(PUZZLES) or ["<none>"])
def test_puzzles_match_reference(name, variant):
    records = _puzzle_records(PUZZLES[name])
    max_activation = ref_records.calculate_max_activation(records)
    predictions = _synthetic_predictions(name, variant, records, max_activation)
    scored = reference_simulate_and_score(records, predictions)
    assert len(scored.scored_sequence_simulations) == len(records)
    check_scored_simulation(scored)


@pytest.mark.skipif(not PUZZLES, reason="shared/data/puzzles/puzzles.json not found")
def test_puzzles_exercise_both_defined_and_undefined_cases():
    # Guard against the comparison above passing vacuously: the puzzles contain
    # all-zero sentences (reference NaN/-inf -> our None) and ordinary ones.
    undefined = defined = 0
    for name in sorted(PUZZLES):
        records = _puzzle_records(PUZZLES[name])
        for t, p in zip(records, _synthetic_predictions(name, "noisy", records, 1.0)):
            if rsquared(t.activations, p) is None:
                undefined += 1
                assert not math.isfinite(
                    ref_scoring.rsquared_score_from_sequences(t.activations, p)
                )
            else:
                defined += 1
    assert undefined > 0 and defined > 0


@pytest.mark.skipif(not PUZZLES, reason="shared/data/puzzles/puzzles.json not found")
def test_puzzles_normalisation_matches_reference():
    for name in sorted(PUZZLES):
        records = _puzzle_records(PUZZLES[name])
        max_activation = ref_records.calculate_max_activation(records)
        for record in records:
            assert normalize_activations(
                record.activations, max_activation
            ) == ref_records.normalize_activations(record.activations, max_activation)


# --- (b) seeded random vectors -------------------------------------------------------

LENGTHS = [1, 2, 3, 4, 5, 8, 17, 64, 257, 1000]


def _random_pair(rng: np.random.Generator, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "normal":
        t = rng.normal(size=n)
        p = 0.7 * t + rng.normal(scale=0.5, size=n)
    elif kind == "relu_sparse":  # most tokens at rest, as real neurons are
        t = np.maximum(rng.normal(loc=-1.0, scale=1.0, size=n), 0.0)
        p = np.floor(np.clip(t * 4 + rng.normal(size=n), 0, 10))
    elif kind == "gelu_negative":  # small negative resting values
        x = rng.normal(size=n)
        t = x * 0.5 * (1 + np.tanh(0.79788456 * (x + 0.044715 * x**3)))
        p = rng.uniform(-0.2, 3.0, size=n)
    elif kind == "heavy_tailed":
        t = rng.standard_t(df=2, size=n) * 30
        p = rng.standard_t(df=2, size=n) * 30 + t
    elif kind == "scaled":
        s = 10.0 ** rng.integers(-6, 7)
        t = rng.normal(size=n) * s
        p = rng.normal(size=n) * s * 3 - t
    elif kind == "integers":
        t = rng.integers(0, 11, size=n).astype(float)
        p = rng.integers(0, 11, size=n).astype(float)
    elif kind == "anti":
        t = rng.normal(size=n)
        p = -2.5 * t + 1.0
    elif kind == "const_pred":
        t = rng.normal(size=n)
        p = np.full(n, 3.0)
    elif kind == "zero_truth":
        t = np.zeros(n)
        p = rng.uniform(0, 10, size=n) * (rng.random() < 0.5)
    else:
        raise AssertionError(kind)
    return t, p


KINDS = [
    "normal",
    "relu_sparse",
    "gelu_negative",
    "heavy_tailed",
    "scaled",
    "integers",
    "anti",
    "const_pred",
    "zero_truth",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", LENGTHS)
def test_random_vectors_match_reference(n, kind):
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{n}".encode()))
    for trial in range(5):
        t, p = _random_pair(rng, n, kind)
        ctx = (kind, n, trial)
        # Lists and arrays alike, as the service passes both.
        for tt, pp in ((t, p), (t.tolist(), p.tolist())):
            assert_matches(pearson(tt, pp), ref_scoring.correlation_score(tt, pp), ctx)
            assert_matches(rsquared(tt, pp), ref_scoring.rsquared_score_from_sequences(tt, pp), ctx)
            assert_matches(
                absolute_dev_explained(tt, pp),
                ref_scoring.absolute_dev_explained_score_from_sequences(tt, pp),
                ctx,
            )
        # And through the reference's score_from_simulation wrapper.
        record = ActivationRecord(tokens=[f"t{i}" for i in range(n)], activations=t.tolist())
        simulation = sequence_simulation(record.tokens, p)
        assert_matches(
            pearson(t, p),
            ref_scoring.score_from_simulation(record, simulation, ref_scoring.correlation_score),
            ctx,
        )


def _random_texts(rng: np.random.Generator, kinds: Sequence[str]):
    records, predictions = [], []
    for i in range(int(rng.integers(1, 9))):
        n = int(rng.choice([1, 2, 3, 7, 20, 64]))
        t, p = _random_pair(rng, n, str(rng.choice(kinds)))
        records.append(ActivationRecord(tokens=[f"x{i}_{j}" for j in range(n)], activations=t.tolist()))
        predictions.append(p.tolist())
    return records, predictions


@pytest.mark.parametrize("seed", range(40))
def test_pooled_random_texts_match_reference(seed):
    rng = np.random.default_rng(seed)
    # Half the seeds mix in constant predictions and all-zero texts.
    kinds = ["normal", "relu_sparse", "gelu_negative", "integers"]
    if seed % 2:
        kinds += ["const_pred", "zero_truth"]
    records, predictions = _random_texts(rng, kinds)
    check_scored_simulation(reference_simulate_and_score(records, predictions))


def test_pooled_aggregate_directly_matches_reference():
    # The reference's aggregate_scored_sequence_simulations on hand-built sequences,
    # including the offset example where pooled != mean of per-text correlations.
    trues = [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0, 0.0], [5.0]]
    predicteds = [[0.0, 1.0], [10.0, 11.0], [1.0, 2.0, 0.0], [4.0]]
    sequences = [
        ScoredSequenceSimulation(
            simulation=sequence_simulation([str(i) for i in range(len(t))], p),
            true_activations=t,
            ev_correlation_score=ref_scoring.correlation_score(t, p),
        )
        for t, p in zip(trues, predicteds)
    ]
    aggregated = ref_scoring.aggregate_scored_sequence_simulations(sequences)
    assert_matches(pooled_correlation(trues, predicteds), aggregated.ev_correlation_score)
    mean_per_text = np.nanmean([s.ev_correlation_score for s in sequences])
    assert abs(aggregated.ev_correlation_score - mean_per_text) > 0.1


def test_pooled_all_zero_texts_match_reference():
    records = [ActivationRecord(tokens=["a", "b"], activations=[0.0, 0.0])] * 3
    predictions = [[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]
    nones = check_scored_simulation(reference_simulate_and_score(records, predictions))
    assert nones == {"per_sequence": 3, "pooled": 1}


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_pearson_extreme_scales_match_reference(scale):
    t = np.array([1.0, 2.0, 3.5]) * scale
    p = np.array([1.0, 3.0, 2.0]) * scale
    assert_matches(pearson(t, p), ref_scoring.correlation_score(t, p))  # both ~0.39736


# --- (c) normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_normalisation_matches_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    records = []
    for i in range(int(rng.integers(1, 6))):
        n = int(rng.integers(1, 40))
        scale = 10.0 ** rng.uniform(-3, 3)
        values = rng.normal(loc=rng.uniform(-1, 1), scale=1.0, size=n) * scale
        records.append(ActivationRecord(tokens=[f"tok{i}_{j}" for j in range(n)], activations=values.tolist()))
    # The reference's own max (relu'd, over all records; 0.0 when nothing is positive),
    # and a few others, including exact tenths of the values and non-positive maxima.
    ref_max = ref_records.calculate_max_activation(records)
    maxima = [ref_max, ref_max / 2, ref_max * 3, 0.0, -1.0]
    some_value = abs(records[0].activations[0]) or 1.0
    maxima += [some_value * k / 10 for k in (1, 3, 7, 10)]
    for max_activation in maxima:
        for record in records:
            ours = normalize_activations(record.activations, max_activation)
            theirs = ref_records.normalize_activations(record.activations, max_activation)
            assert ours == theirs, (record.activations, max_activation)
            assert all(type(x) is int for x in ours)
            # The prompt text the reference builds from its normalisation.
            ours_text = "\n".join(f"{tok}\t{v}" for tok, v in zip(record.tokens, ours))
            assert ours_text == ref_records._format_activation_record(
                record, max_activation, omit_zeros=False
            )


def test_normalisation_boundaries_match_reference():
    # Values on and next to every tenth of the maximum, where floor() decides.
    for max_activation in (1.0, 0.3, 7.0, 2.5e-4, 1e6, 3.0 / 7.0):
        values = []
        for k in range(0, 12):
            v = k * max_activation / 10
            values += [v, np.nextafter(v, -np.inf), np.nextafter(v, np.inf)]
        values += [-max_activation, -0.0]
        assert normalize_activations(values, max_activation) == ref_records.normalize_activations(
            values, max_activation
        )

