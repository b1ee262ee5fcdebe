"""P(yes) from the judge's top logprobs (scorer/judge.py yes_probability), however the
server's tokenizer cut the answer line."""
from __future__ import annotations

import math

import pytest

from llm.backend import Completion, TokenLogprob
from scorer.judge import _parse, yes_probability


def completion(pieces: list[tuple[str, list[tuple[str, float]]]]) -> Completion:
    text = "".join(token for token, _ in pieces)
    return Completion(
        text=text,
        logprobs=[TokenLogprob(token, top[0][1] if top else 0.0, tuple(top)) for token, top in pieces],
    )


def p_yes(pieces) -> list[float | None]:
    made = completion(pieces)
    return [yes_probability(made, offset) for _, offset in _parse(made.text, 1)]


def test_a_separate_answer_token():
    pieces = [("1", []), (":", []), (" yes", [(" yes", math.log(0.7)), (" no", math.log(0.2)), (" the", -9.0)])]
    assert p_yes(pieces) == [pytest.approx(0.7 / 0.9)]


def test_spellings_of_one_answer_add_up():
    pieces = [("1", []), (":", []), (" No", [(" No", math.log(0.5)), (" no", math.log(0.3)), (" Yes", math.log(0.2))])]
    assert p_yes(pieces) == [pytest.approx(0.2)]


def test_an_answer_token_that_carries_the_colon():
    # Some tokenizers keep ": " with the word; its alternatives carry the colon as well.
    pieces = [("1", []), (": yes", [(": yes", math.log(0.6)), (": no", math.log(0.3)), (":", math.log(0.1))])]
    assert p_yes(pieces) == [pytest.approx(0.6 / 0.9)]
    # An alternative without the colon is another line, not an answer to this one.
    pieces = [("1", []), (": no", [(": no", math.log(0.8)), (" yes", math.log(0.2))])]
    assert p_yes(pieces) == [0.0]


def test_no_probability_when_the_logprobs_do_not_spell_the_answer():
    made = completion([("1", []), (":", []), (" yes", [(" yes", -0.1)])])
    made.text = "1: yes "  # the server trimmed or padded the content
    assert [yes_probability(made, offset) for _, offset in _parse(made.text, 1)] == [None]
    assert p_yes([("1", []), (":", []), (" yes", [(" maybe", -0.1)])]) == [None]
