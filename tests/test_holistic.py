"""The holistic scorer: the rubric prompt, reading a level (and its distribution from top
logprobs), the offline levels, and /score end to end: offline and against the loopback stub,
with and without logprobs."""
from __future__ import annotations

import pytest

from core.records import ActivationRecord
from llm.backend import Completion, TokenLogprob
from scorer.scorers.asking import Unreadable, number_distribution
from scorer.scorers.base import ScorerInputError
from scorer.scorers.holistic import build_messages, offline_level, read_level, strengths, top_texts
from tests.conftest_stub import STUB_API_KEY as API_KEY
from tests.stub_openai import HolisticResponder, StubReply, chat_body, error_body, scorer_judges
from tests.test_api_score import assert_error, strict_json
from tests.test_api_scorers import ANIMALS, text


def records_of(*values_lists):
    return [ActivationRecord([f" w{j}" for j in range(len(v))], list(v)) for v in values_lists]


# -- prompt and reading -----------------------------------------------------------------


def test_the_top_texts_are_chosen_by_max_and_shown_in_request_order():
    records = records_of([0, 1], [0, 0], [5, 0], [0, 3], [2, 0], [0.4, 0])
    assert top_texts(records, 3) == [2, 3, 4]
    # Neither a text that never activates nor one below a tenth of the max (nothing to mark) is shown.
    assert top_texts(records, 10) == [0, 2, 3, 4]
    with pytest.raises(ScorerInputError, match="no value is above 0"):
        top_texts(records_of([0, 0], [-1, 0]), 3)


def test_marks_and_strengths_are_shown_on_the_request_s_scale():
    records = [
        ActivationRecord(["The", " fox", " ran", " fast"], [0.0, 10.0, 0.5, 1.5]),
        ActivationRecord(["A", " leopard", "\n"], [0.0, 4.0, 2.0]),
    ]
    levels = [strengths(r, 10.0) for r in records]
    assert levels == [[0, 10, 0, 1], [0, 4, 2]]
    question = build_messages("fast animals", [r.tokens for r in records], levels)[1]["content"]
    assert question.splitlines() == [
        "Explanation: fast animals",
        "",
        "Text 1: The <<fox>> ran <<fast>>",
        'Activations: "fox" 10, "fast" 1',
        "",
        "Text 2: A <<leopard\\n>>",
        'Activations: "leopard" 4, "\\n" 2',
    ]


@pytest.mark.parametrize("reply, level", [("Level: 3", 3), ("3", 3), ("**Level: 4**", 4), (" level 0.\n", 0)])
def test_a_level_is_read_from_the_whole_reply(reply, level):
    value, offset = read_level(reply)
    assert value == level and reply[offset] == str(level)


@pytest.mark.parametrize("reply", ["Level: 3 because it fits", "I think 3", "Level: three", "", "3-4"])
def test_anything_but_a_level_is_unreadable(reply):
    with pytest.raises(Unreadable):
        read_level(reply)


def test_the_level_distribution_comes_from_the_digit_s_alternatives():
    import math

    pieces = [TokenLogprob("Level", -0.01), TokenLogprob(":", -0.01),
              TokenLogprob(" 3", math.log(0.6), ((" 3", math.log(0.6)), (" 4", math.log(0.3)), ("3", math.log(0.05)), (" the", -9.0)))]
    completion = Completion(text="Level: 3", logprobs=pieces)
    distribution = number_distribution(completion, 7, (0, 1, 2, 3, 4))
    # "3" without the space the chosen token carries before the digit is another continuation.
    assert distribution == pytest.approx({0: 0.0, 1: 0.0, 2: 0.0, 3: 2 / 3, 4: 1 / 3})
    # Logprobs that do not spell the reply, or none at all: no distribution.
    assert number_distribution(Completion(text="Level: 4", logprobs=pieces), 7, (0, 1, 2, 3, 4)) is None
    assert number_distribution(Completion(text="Level: 3"), 7, (0, 1, 2, 3, 4)) is None


# -- offline levels -------------------------------------------------------------------


def test_offline_levels_follow_the_rubric_s_counts():
    # Five texts: each a strong token at 1, a weak one at 2 (0.3 of the text's max), nothing elsewhere.
    records = [ActivationRecord(["a", "b", "c", "d", "e", "f"], [0.0, 10.0, 3.0, 0.0, 0.0, 0.0]) for _ in range(5)]
    levels = [strengths(r, 10.0) for r in records]

    def level(predictions):
        return offline_level(records, levels, predictions, threshold=1.0)[0]

    nothing, peak, both, everywhere = [0] * 6, [0, 9, 0, 0, 0, 0], [0, 9, 5, 0, 0, 0], [9] * 6
    assert level([nothing] * 5) == 0
    assert level([peak] + [nothing] * 4) == 1  # a few texts
    assert level([peak] * 3 + [nothing] * 2) == 2  # about half
    assert level([peak] * 4 + [nothing]) == 3  # most
    assert level([peak] * 5) == 3  # every text, but none of the weak activations
    assert level([both] * 5) == 4  # every text, weak activations included
    assert level([everywhere] * 5) == 1  # lights every token: it fits only loosely
    _, flags, extra = offline_level(records, levels, [both] * 4 + [peak], threshold=1.0)
    assert flags[4] == {"peak_lit": True, "precise": True, "explained": True}
    assert extra == {"texts_explained": 1.0, "weak_tokens_lit": 0.8}


# -- /score, offline ---------------------------------------------------------------------


def test_holistic_offline_end_to_end(client):
    good = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic"}))
    assert good["scorer"] == "holistic" and good["metric"] == "rubric_level" and good["offline"] is True
    assert good["judge"]["name"] == "offline" and good["simulations"] == [] and good["failures"] == []
    assert good["usage"]["llm_calls"] == 0
    details = good["details"]
    assert details["from_logprobs"] is False and details["top_k"] == 12
    assert good["score"] == details["level"] / 4 and details["level_distribution"][str(details["level"])] == 1.0
    assert set(details["rubric"]) == {"0", "1", "2", "3", "4"}
    # The texts on which the neuron activates are shown; the others are not.
    assert [t["shown"] for t in good["texts"]] == [True, False, True, False, True, False, True]
    assert good["texts"][0]["marked"] == [1, 3] and good["texts_scored"] == 4
    bad = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic", "explanation": "kitchen"}))
    assert bad["score"] < good["score"]
    # top_k picks the strongest texts.
    two = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic", "top_k": 2}))
    assert [t["index"] for t in two["texts"] if t["shown"]] == [2, 6]


def test_holistic_needs_an_activating_text(client):
    flat = {**ANIMALS, "activations": [text("a b c"), text("d e f")], "scorer": "holistic"}
    assert_error(client.post("/score", json=flat), 400, "invalid_request", "no value is above 0")


@pytest.mark.parametrize("value", [0, 51, "3", 2.5, True])
def test_top_k_is_bounded(client, value):
    assert_error(client.post("/score", json={**ANIMALS, "scorer": "holistic", "top_k": value}), 400, "invalid_request", "top_k")


# -- /score against the stub -------------------------------------------------------------


def holistic_requests(stub):
    return [r for r in stub.requests if HolisticResponder.is_prompt(r)]


def test_holistic_with_logprobs_weights_the_levels(stub_client):
    client, stub = stub_client(scorer_judges(confidence=0.9))
    response = client.post("/score", json={**ANIMALS, "scorer": "holistic"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    sent = holistic_requests(stub)
    assert len(sent) == 1 and sent[0].body["top_logprobs"] == 5 and sent[0].body["temperature"] == 0.0
    # Every shown text has a marked animal the stub's oracle knows: level 4 at 0.9, level 3 at 0.1.
    details = body["details"]
    assert details["level"] == 4 and details["from_logprobs"] is True
    assert details["level_distribution"] == pytest.approx({"0": 0, "1": 0, "2": 0, "3": 0.1, "4": 0.9})
    assert details["expected_level"] == pytest.approx(3.9) and body["score"] == pytest.approx(3.9 / 4)
    assert body["judge"] == {"name": "openai", "model": "stub-model", "offline": False}
    assert body["usage"]["llm_calls"] == 1 and body["usage"]["prompt_tokens"] > 0
    assert API_KEY not in response.get_data(as_text=True)
    # Only the top texts were sent, their activating tokens marked.
    assert sent[0].last_user_message.count("\nText ") == 4 and "<<fox>>" in sent[0].last_user_message


def test_holistic_without_logprobs_scores_the_level(stub_client):
    client, stub = stub_client(scorer_judges(logprobs=False))
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic", "explanation": "fox"}))
    details = body["details"]
    # "fox" lights two of the four shown texts: half, level 2.
    assert details["level"] == 2 and details["from_logprobs"] is False
    assert body["score"] == 0.5 and details["level_distribution"]["2"] == 1.0


def test_a_cached_level_costs_no_call(stub_client):
    client, stub = stub_client(scorer_judges())
    first = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic"}))
    again = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic"}))
    assert len(holistic_requests(stub)) == 1 and again["usage"]["cache_hits"] == 1
    assert again["score"] == first["score"] and again["details"] == first["details"]


def test_an_unreadable_level_is_asked_again_once_then_a_502_never_a_zero(stub_client):
    replies = iter(["It is a good explanation.", "Level: 2"])
    client, stub = stub_client(lambda request: chat_body(request, next(replies)), cache_path="")
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic"}))
    assert body["details"]["level"] == 2 and body["usage"]["llm_calls"] == 2
    retry = stub.requests[-1].last_user_message
    assert "could not be used" in retry and "is not 'Level: N'" in retry

    client, stub = stub_client(lambda request: chat_body(request, "Level: 7"), cache_path="")
    response = client.post("/score", json={**ANIMALS, "scorer": "holistic"})
    assert_error(response, 502, "upstream_error", "no usable level")
    assert stub.calls() == 2


def test_a_server_that_refuses_logprobs_still_gets_a_level(stub_client):
    responder = scorer_judges()

    def handler(request):
        if request.body.get("logprobs"):
            return StubReply(status=400, body=error_body("logprobs are not supported"))
        return responder(request)

    client, stub = stub_client(handler)
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "holistic"}))
    assert stub.calls() == 2 and body["details"]["from_logprobs"] is False and body["score"] == 1.0
