"""The offline explainer: short, honest, deterministic."""
from __future__ import annotations

import pytest

from explainer.errors import NothingToExplain
from explainer.offline import explain_offline
from explainer.records import ActivationRecord


def rec(*pairs):
    """rec(("the", 0), (" fox", 2.5)) -> a record; a bare string is a zero."""
    pairs = [(p, 0.0) if isinstance(p, str) else p for p in pairs]
    return ActivationRecord([t for t, _ in pairs], [float(v) for _, v in pairs])


FOX = [
    rec("the ", (" quick", 0.1), " brown", (" fox", 2.5)),
    rec("spotted ", (" leopard", 2.5), " sprints", " at"),
    rec("a", (" fox", 2.4), " ran"),
]


def test_names_the_strongest_tokens():
    assert explain_offline(FOX) == 'the tokens "fox", "leopard"'


def test_one_dominant_token():
    records = [rec("a", (" fox", 3.0)), rec("the", (" Fox", 2.8)), rec("big", (" cat", 0.5))]
    assert explain_offline(records) == 'the token "fox"'  # case-folded and stripped: one token


def test_context_when_many_tokens_share_one_predecessor():
    records = [
        rec("a", " lot", " of", (" people", 3.0)),
        rec("some", " of", (" the", 3.0), " time"),
        rec("made", " of", (" wood", 2.5), (".", 0.3)),
        rec("cup", " of", (" tea", 2.0)),
    ]
    assert explain_offline(records) == 'tokens after "of", such as "people", "the", "wood"'


def test_context_of_a_dominant_token():
    records = [
        rec("because", (" of", 3.0), " rain"),
        rec("only", " because", (" of", 2.6), " him"),
        rec("in", " spite", (" of", 0.9)),
    ]
    assert explain_offline(records) == 'the token "of" after "because"'


def test_spread_out_tokens_are_examples_not_a_claim():
    records = [rec((f" w{i}", 2.0 + i / 2), "x") for i in range(6)]  # 10, 8, 7, 6, 5, 4
    assert explain_offline(records) == 'tokens such as "w5", "w4", "w3"'


def test_deterministic_on_ties_and_order():
    records = [rec(("b", 1.0)), rec(("a", 1.0)), rec(("c", 1.0))]
    first = explain_offline(records)
    assert first == explain_offline(list(reversed(records)))
    assert first == 'the tokens "a", "b", "c"'  # equal weights: alphabetical
    four = records + [rec(("d", 1.0))]
    assert explain_offline(four) == 'tokens such as "a", "b", "c"'


def test_visible_whitespace_tokens():
    records = [rec("a", ("\n", 2.0)), rec("b", ("\n", 2.0))]
    assert explain_offline(records) == 'the token "\\n"'


def test_threshold_and_max_activation():
    records = [rec(("a", 10.0), ("b", 2.0)), rec(("b", 2.0))]
    assert explain_offline(records, threshold=5) == 'the token "a"'
    assert explain_offline(records, threshold=1) == 'the tokens "a", "b"'
    # A caller's maximum far above these texts leaves nothing at the threshold: the
    # positive tokens still speak, by their raw values.
    assert explain_offline(records, max_activation=1000.0) == 'the tokens "a", "b"'


def test_nothing_to_explain():
    with pytest.raises(NothingToExplain):
        explain_offline([rec("a", ("b", -1.0)), rec("c")])


def test_a_whitespace_token_before_the_hits_is_not_named_as_context():
    from core.records import ActivationRecord
    from explainer.offline import explain_offline

    records = [
        ActivationRecord([" the", " ", "12"], [0, 0, 5]),
        ActivationRecord([" a", " ", "150"], [0, 0, 4]),
        ActivationRecord([" so", " ", "2"], [0, 0, 3]),
    ]
    explanation = explain_offline(records)
    assert "after" not in explanation and '"12"' in explanation
