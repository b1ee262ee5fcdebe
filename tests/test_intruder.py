"""The intruder scorer: the seeded rounds and their marks, reading the judge's choice, the
offline guess, and /score end to end: offline and against the loopback stub, with and
without logprobs; unreadable rounds are listed, never counted as wrong."""
from __future__ import annotations

import random

import pytest

from core.records import ActivationRecord
from scorer.scorers.asking import Unreadable
from scorer.scorers.base import ScorerInputError
from scorer.scorers.intruder import LOWEST_FIFTH, NON_ACTIVATING, build_messages, plan_rounds, read_choice
from tests.conftest_stub import STUB_API_KEY as API_KEY
from tests.stub_openai import IntruderResponder, chat_body, scorer_judges
from tests.test_api_score import assert_error, strict_json
from tests.test_api_scorers import ANIMALS, text


def records_of(*values_lists):
    return [ActivationRecord([f" w{j}" for j in range(len(v))], list(v)) for v in values_lists]


MIXED = records_of(
    [0, 9, 0, 0], [0, 0, 8, 0, 1], [7, 0, 0], [0, 0, 0, 10], [0, 6, 6, 0], [0, 0, 1], [0, 0, 0, 0], [2, 0, 0, 0]
)


# -- the plan --------------------------------------------------------------------------


def test_rounds_are_seeded_and_each_hides_one_intruder_among_activating_texts():
    plan = plan_rounds(MIXED, 0.3, rounds=12, per_round=3, seed=4)
    assert plan == plan_rounds(MIXED, 0.3, rounds=12, per_round=3, seed=4)
    assert plan.source == NON_ACTIVATING and plan.cut == pytest.approx(3.0)
    assert plan.activating == (0, 1, 2, 3, 4) and plan.intruders == (5, 6, 7)
    positions = set()
    for round_ in plan.rounds:
        assert len(round_.texts) == 4 and round_.intruder in round_.texts
        assert [i for i in round_.texts if i != round_.intruder] == [i for i in round_.texts if i in plan.activating]
        positions.add(round_.texts.index(round_.intruder))
        for i, marks in zip(round_.texts, round_.marks):
            assert len(marks) == len(MIXED[i].tokens) and any(marks)
            if i != round_.intruder:
                assert list(marks) == [v >= 3.0 for v in MIXED[i].values]  # the truly activating tokens
    assert len(positions) > 1  # the intruder does not always sit in one place
    assert {r.intruder for r in plan.rounds} == {5, 6, 7}  # every intruder is used in turn
    assert plan != plan_rounds(MIXED, 0.3, rounds=12, per_round=3, seed=5)


def test_without_non_activating_texts_the_lowest_fifth_stands_in():
    records = records_of(*[[0, 5 + k] for k in range(10)])
    plan = plan_rounds(records, 0.3, rounds=3, per_round=4, seed=0)
    assert plan.source == LOWEST_FIFTH and plan.intruders == (0, 1)
    assert all(r.intruder in (0, 1) for r in plan.rounds) and 0 not in plan.activating


def test_the_intruder_needs_two_activating_texts():
    with pytest.raises(ScorerInputError, match="at least 2 activating texts"):
        plan_rounds(records_of([0, 9], [0, 0], [0, 0]), 0.3, 3, 4, 0)
    with pytest.raises(ScorerInputError, match="no value is above 0"):
        plan_rounds(records_of([0, 0], [0, 0]), 0.3, 3, 4, 0)
    # Fewer activating texts than asked for: each round shows them all.
    assert plan_rounds(records_of([0, 9], [8, 0], [0, 0]), 0.3, 2, 4, 0).per_round == 2


def test_the_prompt_numbers_the_texts_and_shows_the_marks():
    plan = plan_rounds(MIXED, 0.3, rounds=1, per_round=2, seed=0)
    messages = build_messages(MIXED, plan.rounds[0])
    assert messages[0]["role"] == "system" and "odd one out" in messages[0]["content"]
    lines = messages[1]["content"].splitlines()
    assert [line.split(":")[0] for line in lines] == ["Text 1", "Text 2", "Text 3"]
    assert all("<<" in line for line in lines)


@pytest.mark.parametrize("reply, number", [("Odd one: 3", 3), ("2", 2), ("Text 4.", 4), ("**Odd one out: 1**", 1)])
def test_a_choice_is_read_from_the_whole_reply(reply, number):
    value, offset = read_choice(reply)
    assert value == number and reply[offset] == str(number)


@pytest.mark.parametrize("reply", ["Odd one: 3, since it is about rain", "none of them", "Odd one: two", ""])
def test_anything_but_a_number_is_unreadable(reply):
    with pytest.raises(Unreadable):
        read_choice(reply)


# -- /score, offline ---------------------------------------------------------------------


def test_intruder_offline_end_to_end_ignores_the_explanation(client):
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "intruder"}))
    assert body["scorer"] == "intruder" and body["metric"] == "intruder_accuracy" and body["offline"] is True
    assert body["usage"]["llm_calls"] == 0 and body["failures"] == [] and body["simulations"] == []
    details = body["details"]
    assert details["explanation_used"] is False and "explanation is not used" in details["measures"]
    assert details["rounds"] == 10 and details["rounds_answered"] == 10 and details["chance"] == 0.2
    assert len(details["round_details"]) == 10
    # The animal texts share their marked words; a random mark in an everyday text stands out.
    assert body["score"] >= 0.8
    other = strict_json(client.post("/score", json={**ANIMALS, "scorer": "intruder", "explanation": "kitchen"}))
    assert other["score"] == body["score"] and other["details"] == details
    assert [t["label"] for t in body["texts"]] == [
        "activating", "intruder", "activating", "intruder", "activating", "intruder", "activating"
    ]
    assert sum(t["rounds_shown"] for t in body["texts"]) == 10 * 5


def test_an_uninterpretable_latent_scores_near_chance_offline(client):
    # The same texts, the activations moved to arbitrary tokens: nothing is shared.
    rng = random.Random(1)
    words = "the quick brown fox jumps over a lazy dog while rain fell on old roofs and kitchens".split()
    activations = []
    for k in range(24):
        tokens = [" " + rng.choice(words) for _ in range(8)]
        values = [0.0] * 8
        if k % 2 == 0:
            values[rng.randrange(8)] = 5.0
        activations.append({"tokens": tokens, "values": values})
    body = strict_json(
        client.post("/score", json={"explanation": "x", "activations": activations, "scorer": "intruder", "rounds": 40})
    )
    assert body["details"]["rounds_answered"] == 40
    assert body["score"] < 0.5  # chance is 0.2; an interpretable latent is near 1


@pytest.mark.parametrize(
    "option, value", [("rounds", 0), ("rounds", 51), ("activating_per_round", 1), ("activating_per_round", 11)]
)
def test_intruder_options_are_bounded(client, option, value):
    response = client.post("/score", json={**ANIMALS, "scorer": "intruder", option: value})
    assert_error(response, 400, "invalid_request", option)


def test_the_round_options_reach_the_scorer(client):
    body = strict_json(
        client.post("/score", json={**ANIMALS, "scorer": "intruder", "rounds": 3, "activating_per_round": 2, "seed": 9})
    )
    details = body["details"]
    assert details["rounds"] == 3 and details["activating_per_round"] == 2 and details["seed"] == 9
    assert details["chance"] == pytest.approx(1 / 3)
    assert all(len(r["texts"]) == 3 for r in details["round_details"])


def test_too_few_activating_texts_is_a_400(client):
    payload = {**ANIMALS, "activations": [text("a fox ran", {1: 2.0}), text("a table")], "scorer": "intruder"}
    assert_error(client.post("/score", json=payload), 400, "invalid_request", "at least 2 activating texts")


# -- /score against the stub -------------------------------------------------------------


def intruder_requests(stub):
    return [r for r in stub.requests if IntruderResponder.is_prompt(r)]


def test_intruder_with_logprobs(stub_client):
    client, stub = stub_client(scorer_judges(confidence=0.8))
    response = client.post("/score", json={**ANIMALS, "scorer": "intruder", "rounds": 6, "seed": 3})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    assert len(intruder_requests(stub)) == 6 and body["usage"]["llm_calls"] == 6
    assert all(r.last_user_message.count("Text ") == 5 for r in intruder_requests(stub))
    assert body["score"] == 1.0 and body["details"]["rounds_answered"] == 6
    assert body["details"]["expected_accuracy"] == pytest.approx(0.8)
    assert all(r["probability"] == pytest.approx(0.8) for r in body["details"]["round_details"])
    assert body["judge"] == {"name": "openai", "model": "stub-model", "offline": False}
    assert "fox and leopard" not in "".join(r.last_user_message for r in stub.requests)  # never sent
    assert API_KEY not in response.get_data(as_text=True)


def test_intruder_without_logprobs(stub_client):
    client, stub = stub_client(scorer_judges(logprobs=False))
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "intruder", "rounds": 4}))
    assert body["score"] == 1.0 and body["details"]["expected_accuracy"] is None
    assert all(r["probability"] is None for r in body["details"]["round_details"])


def test_unreadable_rounds_are_listed_and_left_out_never_wrong(stub_client):
    responder = IntruderResponder(logprobs=False)
    seen: dict[str, int] = {}

    def handler(request):
        question = request.last_user_message.split("\n\n(A previous answer")[0]
        seen[question] = seen.get(question, 0) + 1
        # A round whose first text is about the rain on the roof never gets a usable answer.
        if "roof" in question.split("\n")[0]:
            return chat_body(request, "I cannot tell.")
        return responder(request)

    client, stub = stub_client(handler, cache_path="")
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "intruder", "rounds": 10}))
    failed = [r["round"] for r in body["details"]["round_details"] if r["answer"] is None]
    assert failed, "the seeded plan should put the roof text first in some round"
    # A failed round points at no text (the viewer marks failed texts by index).
    assert [f["index"] for f in body["failures"]] == [None] * len(failed)
    assert [f["reason"].split(":")[0] for f in body["failures"]] == [f"round {r}" for r in failed]
    assert all("unusable answer after 2 attempts" in f["reason"] for f in body["failures"])
    assert body["details"]["rounds_answered"] == 10 - len(failed) and body["score"] == 1.0
    assert stub.calls() == 10 + len(failed)  # each unreadable round asked once more, no more


def test_a_judge_that_never_answers_is_a_502(stub_client):
    client, stub = stub_client(lambda request: chat_body(request, "They are all fine."), cache_path="")
    response = client.post("/score", json={**ANIMALS, "scorer": "intruder", "rounds": 3})
    assert_error(response, 502, "upstream_error", "every round")
    assert stub.calls() == 6


# -- the offline guess with a scripted simulator ----------------------------------------------


class WordSimulator:
    """Predicts 9 on a token whose word the explanation lists, 0 elsewhere; fails on `fail_on` words."""

    name, model = "scripted", None

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)
        self.explanations = []

    def simulate(self, explanation, texts, *, deadline=None):
        from llm.usage import Usage
        from scorer.simulation import SequenceSimulation
        from scorer.simulators.base import SimulationRun, TextFailure

        self.explanations.append(explanation)
        words = set(explanation.split(", "))
        tokens = list(texts[0])
        if self.fail_on & {t.strip() for t in tokens}:
            return SimulationRun([None], [TextFailure(0, "scripted")], Usage())
        values = [9.0 if t.strip() in words else 0.0 for t in tokens]
        return SimulationRun([SequenceSimulation(tokens, values)], [], Usage())


def test_the_offline_guess_checks_each_text_against_the_others_marks():
    from scorer.scorers.intruder import Round, offline_guess

    records = [
        ActivationRecord([" a", " fox"], [0, 5]),
        ActivationRecord([" the", " fox"], [0, 5]),
        ActivationRecord([" one", " fox"], [0, 5]),
        ActivationRecord([" big", " table"], [0, 0]),
    ]
    round_ = Round(texts=(0, 3, 1, 2), intruder=3, marks=((False, True), (False, True), (False, True), (False, True)))
    simulator = WordSimulator()
    position, fits = offline_guess(records, round_, simulator, "0:0", None)
    assert position == 1 and fits == [9.0, 0.0, 9.0, 9.0]
    assert simulator.explanations[1] == "fox"  # the others' marked words, once each
    # Equal fits: the round's seed picks among them, the same way every time.
    flat = Round(texts=(3, 0), intruder=3, marks=((True, False), (True, False)))
    guesses = {offline_guess(records, flat, WordSimulator(), f"0:{r}", None)[0] for r in range(20)}
    assert guesses == {0, 1}
    assert offline_guess(records, flat, WordSimulator(), "0:3", None) == offline_guess(records, flat, WordSimulator(), "0:3", None)
    # A text the simulator fails on: no guess (the round is listed as failed, not counted wrong).
    assert offline_guess(records, round_, WordSimulator(fail_on={"table"}), "0:0", None)[0] is None
