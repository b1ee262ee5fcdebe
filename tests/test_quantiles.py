"""Results by activation level (`quantiles`): the bins, the per-bin accuracy and correlation,
and where they appear in /score answers (detection, fuzzing, simulation)."""
from __future__ import annotations

import pytest

from core.records import ActivationRecord
from scorer.math import pooled_correlation
from scorer.scorers.quantiles import accuracy_by_bin, bin_of, correlation_by_bin
from tests.test_api_score import strict_json
from tests.test_api_scorers import ANIMALS


def records_with_max(*maxima: float) -> list[ActivationRecord]:
    return [ActivationRecord(["a", "b"], [0.0, m]) for m in maxima]


def test_bins_are_fifths_of_the_request_max():
    assert [bin_of(v, 10.0) for v in (-1, 0, 1.9, 2.0, 3.9, 4.0, 6.0, 8.0, 9.99, 10.0)] == [0, 0, 0, 1, 1, 2, 3, 4, 4, 4]
    assert bin_of(5.0, 0.0) == 0  # no activation anywhere: one bin


def test_values_near_the_float_maximum_stay_finite():
    huge = 1.7e308
    records = records_with_max(0.0, huge / 2, huge)
    assert [bin_of(r.max_value, huge) for r in records] == [0, 2, 4]
    bins = accuracy_by_bin(records, [True, True, False])
    assert bins[4]["high"] == pytest.approx(huge) and all(b["low"] <= b["high"] for b in bins)


def test_accuracy_per_bin_leaves_unanswered_texts_out():
    records = records_with_max(0, 0.5, 3.0, 9.0, 10.0, 9.5)
    correct = [True, False, None, True, False, True]
    bins = accuracy_by_bin(records, correct, probabilities=[0.1, 0.6, None, 0.9, 0.2, 0.8])
    assert [b["bin"] for b in bins] == [0, 1, 2, 3, 4]
    assert [b["texts"] for b in bins] == [2, 1, 0, 0, 3]
    assert [b["texts_scored"] for b in bins] == [2, 0, 0, 0, 3]
    assert bins[0]["accuracy"] == 0.5 and bins[1]["accuracy"] is None and bins[4]["accuracy"] == pytest.approx(2 / 3)
    assert bins[0]["low"] == 0.0 and bins[0]["high"] == pytest.approx(2.0) and bins[4]["high"] == pytest.approx(10.0)
    assert bins[0]["mean_probability"] == pytest.approx(0.35) and bins[4]["mean_probability"] == pytest.approx(1.9 / 3)


def test_no_breakdown_when_every_text_is_in_one_bin():
    assert accuracy_by_bin(records_with_max(9, 9.5, 10), [True, True, False]) is None
    assert correlation_by_bin(records_with_max(9, 10), [[0, 1], [0, 1]]) is None
    # Texts the scorer did not judge do not count toward spanning levels.
    judged = [False, True, True]
    assert accuracy_by_bin(records_with_max(0, 9, 10), [None, True, True], judged=judged) is None


def test_correlation_per_bin_pools_the_bin_s_texts():
    records = [
        ActivationRecord(["a", "b", "c"], [0.0, 0.0, 0.0]),
        ActivationRecord(["a", "b", "c"], [0.0, 0.0, 0.0]),
        ActivationRecord(["a", "b", "c"], [0.0, 10.0, 2.0]),
        ActivationRecord(["a", "b", "c"], [9.0, 0.0, 0.0]),
    ]
    predicted = [[0.0, 3.0, 0.0], None, [0.0, 9.0, 1.0], [0.0, 8.0, 0.0]]
    bins = correlation_by_bin(records, predicted)
    assert bins[0]["texts"] == 2 and bins[0]["texts_scored"] == 1
    assert bins[0]["correlation"] is None  # an all-zero truth: undefined, not 0
    assert bins[0]["mean_simulated_max"] == 3.0  # ... but it fires there
    # Bin 4 pools text 2 and 3: the prediction misses text 3's token.
    pooled = pooled_correlation([records[2].values, records[3].values], [predicted[2], predicted[3]])
    assert bins[4]["texts"] == 2 and bins[4]["correlation"] == pytest.approx(pooled)
    assert bins[4]["correlation"] < 0.5


def test_score_answers_carry_quantiles_where_the_texts_span_levels(client):
    for scorer in ("simulation", "detection", "fuzzing"):
        body = strict_json(client.post("/score", json={**ANIMALS, "scorer": scorer}))
        bins = body["quantiles"]
        assert [b["bin"] for b in bins] == [0, 1, 2, 3, 4], scorer
        key = "correlation" if scorer == "simulation" else "accuracy"
        assert all(key in b for b in bins)
        assert sum(b["texts"] for b in bins) == (4 if scorer == "fuzzing" else 7)  # fuzzing: activating only
    one_level = {**ANIMALS, "activations": [ANIMALS["activations"][0], ANIMALS["activations"][2]]}
    assert strict_json(client.post("/score", json=one_level))["quantiles"] is None
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection", "explanation": "kitchen"}))
    assert body["quantiles"][4]["accuracy"] == 0.0  # it misses the strongest texts, and the answer shows where
