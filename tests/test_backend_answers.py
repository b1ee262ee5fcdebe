"""Hostile backends: every answer becomes values or a per-text failure, never a 500 or zeros.

Over real HTTP to the loopback stub (tests/stub_openai.py): numbers of thousands of
digits, JSON nested 100,000 deep, logprobs of +800, answers cut at max_tokens
(finish_reason "length"), answers that echo the prompt, runaway explanations.
"""
from __future__ import annotations

import json
import math

import pytest

from llm.answers import PromptEcho, Truncated, probability, read_answer
from llm.backend import Completion, TokenLogprob
from scorer.simulators.batched import BatchedSimulator, dense_answer_tokens, output_budget, parse_answer
from scorer.simulators.prompts import MAX_OUTPUT_TOKENS, digit_distribution
from tests.stub_openai import (
    JudgeResponder,
    StubOpenAI,
    StubReply,
    chat_body,
    echo_prompt,
    truncate,
)
from tests.test_api_score import assert_error, strict_json

API_KEY = "sk-test-hostile-backend-5531"
EXPLAINER_SYSTEM = "units of a language model"

TEXTS = [
    {"tokens": ["the", " quick", " brown", " fox"], "values": [0, 0.5, 0, 2.5]},
    {"tokens": ["a", " table", " and", " chairs"], "values": [0, 0, 0, 0]},
    {"tokens": ["the", " spotted", " leopard", " sprints"], "values": [0, 1.0, 3.0, 0]},
    {"tokens": ["rain", " fell", " on", " roofs"], "values": [0.2, 0, 0, 0]},
]
ANIMALS = {"explanation": "fox and leopard", "activations": TEXTS}
HUGE_DIGITS = "7" * 5000  # more than Python's int() converts (4300)


class Scripted:
    """The keyword oracle for every prompt, unless `answer(request, good_body)` says otherwise."""

    def __init__(self):
        self.good = JudgeResponder()
        self.answer = None

    def __call__(self, request):
        system = next((m.get("content", "") for m in request.messages if m.get("role") == "system"), "")
        if request.is_chat and EXPLAINER_SYSTEM in system:
            good = chat_body(request, " animals such as foxes.")
        else:
            good = self.good(request)
        if self.answer is None:
            return good
        return self.answer(request, good)


@pytest.fixture
def scripted():
    handler = Scripted()
    with StubOpenAI(handler) as server:
        server.script = handler
        yield server


@pytest.fixture
def client(make_client, scripted):
    return make_client(
        openai_base_url=scripted.base_url,
        openai_api_key=API_KEY,
        simulator_model="stub-model",
        explainer_model="stub-model",
        llm_max_retries=0,
        request_timeout=20.0,
        cache_path="",
    )


def is_judge(request) -> bool:
    return JudgeResponder.is_judge_prompt(request)


def content(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def with_content(request, good: dict, text: str) -> dict:
    good["choices"][0]["message"]["content"] = text
    good["choices"][0]["logprobs"] = None
    return good


def assert_no_500(response) -> dict:
    assert response.status_code in (200, 502), response.get_data(as_text=True)
    body = strict_json(response)
    assert API_KEY not in json.dumps(body)
    return body


def failed(body: dict) -> set[int]:
    return {f["index"] for f in body["failures"]}


# -- (a) numbers, nesting and logprobs a parser cannot hold -------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "1: 3=" + "9" * 400,  # a value of hundreds of digits
        "1: " + HUGE_DIGITS + "=3",  # a token index of thousands of digits
        HUGE_DIGITS + ": 3=4\n1: 3=9",  # a text number of thousands of digits (and a line for text 1)
        "1: 3=1e999",
    ],
)
def test_batched_lines_with_huge_numbers_fail_their_text_not_the_request(client, scripted, line):
    def answer(request, good):
        if "quick" not in request.last_user_message:
            return good
        others = [ln for ln in content(good).splitlines() if not ln.startswith("1:")]
        return with_content(request, good, "\n".join([line, *others]))

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "batched"}))
    # A text number of thousands of digits is no text's number: that line is prose.
    assert failed(body) == (set() if line.startswith(HUGE_DIGITS) else {0})
    assert body["score"] is not None


def test_a_json_answer_nested_100000_deep_is_a_failure(client, scripted):
    scripted.script.answer = lambda request, good: with_content(request, good, "[" * 100_000 + "]" * 100_000)
    body = assert_error(client.post("/score", json={**ANIMALS, "simulator": "json"}), 502, "upstream_error")
    assert "every text" in body["error"]


@pytest.mark.parametrize("literal", ["9" * 400, HUGE_DIGITS, "1e999", "NaN", "Infinity"])
def test_json_activations_that_are_no_finite_number_fail_the_text(client, scripted, literal):
    def answer(request, good):
        if "quick" not in request.last_user_message:
            return good
        items = json.loads(content(good))["activations"]
        text = json.dumps({"activations": [{"token": i["token"], "activation": 0} for i in items]})
        return with_content(request, good, text.replace('"activation": 0}]', f'"activation": {literal}}}]'))

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "json"}))
    assert body["score"] is not None and failed(body) == {0}


def test_a_judge_line_numbered_with_thousands_of_digits_is_prose(client, scripted):
    def answer(request, good):
        if not is_judge(request):
            return good
        return with_content(request, good, HUGE_DIGITS + ": yes\n" + content(good))

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "scorer": "detection", "judge": "openai"}))
    assert body["failures"] == [] and body["score"] is not None


def test_huge_logprobs_are_clamped_not_overflowed(client, scripted):
    def answer(request, good):
        choice = good["choices"][0]
        items = (choice.get("logprobs") or {}).get("content") or []
        for item in items:
            for alt in item["top_logprobs"]:
                alt["logprob"] = 800.0
            item["logprob"] = 800.0
        return good

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "logprob"}))
    assert body["failures"] == []
    for simulation in body["simulations"]:
        for probabilities in simulation["simulation"]["distribution_probabilities"]:
            assert all(0 <= p <= 1 for p in probabilities)
    judged = assert_no_500(client.post("/score", json={**ANIMALS, "scorer": "detection", "judge": "openai"}))
    assert judged["failures"] == []


def test_huge_prompt_logprobs_in_all_at_once_are_clamped(client, scripted):
    def answer(request, good):
        for top in good["choices"][0]["logprobs"]["top_logprobs"]:
            if top:
                for key in top:
                    top[key] = 710.5
        return good

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "all_at_once"}))
    assert body["failures"] == []


def test_an_http_body_nested_100000_deep_is_a_502(client, scripted):
    scripted.enqueue(*[StubReply(body='{"choices": ' + "[" * 100_000 + "]" * 100_000 + "}")] * 8)
    assert_error(client.post("/score", json={**ANIMALS, "simulator": "json"}), 502, "upstream_error")


def test_a_body_of_the_wrong_shape_is_no_500(client, scripted):
    def answer(request, good):
        good["choices"][0]["message"]["content"] = {"not": "text"}
        good["usage"] = {"prompt_tokens": "many", "completion_tokens": 1e300}
        good["model"] = ["x"]
        return good

    scripted.script.answer = answer
    for simulator in ("batched", "json", "logprob"):
        assert_no_500(client.post("/score", json={**ANIMALS, "simulator": simulator}))


def test_digit_distribution_and_probability_never_overflow():
    assert probability(800.0) == 1.0 and probability(float("nan")) == 0.0 and probability("x") == 0.0
    distribution = digit_distribution([("3", 800.0), ("4", 710.0), ("5", -1.0)])
    assert math.isclose(sum(distribution.values()), 1.0)
    assert all(math.isfinite(p) for p in distribution.values())


# -- (b) an answer cut at max_tokens ---------------------------------------------------------


def test_a_batched_answer_cut_short_fails_the_cut_texts_instead_of_zero_filling(client, scripted):
    # "1: 3=9\n2:\n3: 2=9\n4:" cut after "2:" would read text 2 as all zeros without finish_reason.
    def answer(request, good):
        text = content(good)
        cut = text.index("\n2:") + len("\n2:")
        good = with_content(request, good, text[:cut])
        good["choices"][0]["finish_reason"] = "length"
        return good

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "batched"}))
    # Texts 2-4 were cut; the re-ask (texts 2-4 in one batch, cut the same way) saves text 2.
    assert failed(body) == {2, 3}
    assert all("cut at the output limit" in f["reason"] for f in body["failures"])
    assert body["simulations"][0]["simulation"]["expected_activations"][3] > 0
    # The re-ask had a larger output budget.
    budgets = [r.body["max_tokens"] for r in scripted.requests]
    assert budgets[1] > budgets[0]


def test_a_cut_answer_is_reasked_with_more_room_and_then_scored(client, scripted):
    calls = []

    def answer(request, good):
        calls.append(request.body["max_tokens"])
        return truncate(good, 0.3) if len(calls) == 1 else good

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "json"}))
    assert body["failures"] == [] and body["score"] is not None
    assert max(calls) == 2 * min(calls)


@pytest.mark.parametrize("simulator", ["json", "logprob"])
@pytest.mark.parametrize("reason", ["length", "content_filter", "tool_calls"])
def test_per_text_formats_never_use_an_unfinished_answer(client, scripted, simulator, reason):
    def answer(request, good):
        good["choices"][0]["finish_reason"] = reason  # the content is complete and readable
        return good

    scripted.script.answer = answer
    body = assert_error(client.post("/score", json={**ANIMALS, "simulator": simulator}), 502, "upstream_error")
    assert reason in body["error"]


@pytest.mark.parametrize("reason", ["content_filter", "tool_calls"])
def test_compact_never_uses_an_unfinished_answer(client, scripted, reason):
    def answer(request, good):
        good["choices"][0]["finish_reason"] = reason  # the content is complete and readable
        return good

    scripted.script.answer = answer
    body = assert_error(client.post("/score", json={**ANIMALS, "simulator": "compact"}), 502, "upstream_error")
    assert reason in body["error"]


def test_all_at_once_reads_the_echoed_prompt_whatever_the_generated_tail(client):
    # max_tokens=1: the generated part is always cut ("length"); the values are in the prompt.
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "all_at_once"}))
    assert body["failures"] == []


def test_a_judge_answer_cut_short_fails_the_cut_texts(client, scripted):
    def answer(request, good):
        if not is_judge(request):
            return good
        good = with_content(request, good, content(good).split("\n")[0] + "\n2: y")
        good["choices"][0]["finish_reason"] = "length"
        return good

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "scorer": "detection", "judge": "openai"}))
    # Three texts cut in the first answer, one saved by the re-ask; none counted as a "no".
    assert len(body["failures"]) == 2
    assert all("cut at the output limit" in f["reason"] for f in body["failures"])


def test_the_backend_carries_finish_reason(scripted, make_backend):
    scripted.script.answer = lambda request, good: truncate(good)
    backend = make_backend(scripted.base_url)
    completion = backend.chat([{"role": "user", "content": "hello"}], model="m")
    assert completion.finish_reason == "length"
    scripted.script.answer = None
    assert backend.chat([{"role": "user", "content": "hello"}], model="m").finish_reason == "stop"


def test_the_batched_output_cap_fits_the_densest_answer():
    from llm.tokens import count_tokens

    for lengths in ([64] * 10, [700], [1, 2, 3], [999, 5]):
        densest = "\n".join(
            f"{n}: " + " ".join(f"{i}=10" for i in range(length)) for n, length in enumerate(lengths, start=1)
        )
        assert output_budget(lengths) >= count_tokens(densest) >= 0.9 * dense_answer_tokens(lengths)


def test_batches_are_split_so_that_a_dense_answer_fits_the_cap(scripted, make_backend):
    texts = [[f" w{k}" for k in range(300)] for _ in range(6)]  # 1,800 tokens: within max_batch_tokens
    simulator = BatchedSimulator(make_backend(scripted.base_url), "stub-model")
    run = simulator.simulate("w1", texts)
    assert run.failures == []
    assert len(scripted.requests) > 1
    for request in scripted.requests:
        assert request.body["max_tokens"] <= MAX_OUTPUT_TOKENS
        shown = request.last_user_message.count("\n\nText ")
        assert request.body["max_tokens"] >= dense_answer_tokens([300] * shown)


def test_parse_answer_drops_the_cut_line_only_when_cut():
    assert parse_answer("1: 0=3\n2:", [2, 2], truncated=False) == [[3.0, 0.0], [0.0, 0.0]]
    whole, cut = parse_answer("1: 0=3\n2:", [2, 2], truncated=True)
    assert whole == [3.0, 0.0] and "cut at the output limit" in cut


# -- (c) echoes of the prompt and runaway explanations --------------------------------------


@pytest.mark.parametrize("echo", ["every message", "instructions"])
def test_detection_refuses_an_echo_of_its_prompt(client, scripted, echo):
    # The instructions show "1: yes" / "2: no": with two texts a batch, an echo of the
    # instructions used to read as two verdicts (200, failures: []).
    def answer(request, good):
        if not is_judge(request):
            return good
        if echo == "every message":
            return with_content(request, good, echo_prompt(request))
        return with_content(request, good, request.messages[0]["content"])

    scripted.script.answer = answer
    response = client.post("/score", json={**ANIMALS, "scorer": "detection", "judge": "openai", "batch_size": 2})
    assert_error(response, 502, "upstream_error")


@pytest.mark.parametrize("simulator", ["batched", "compact", "json", "logprob"])
def test_simulators_refuse_an_echo_of_their_prompt(client, scripted, simulator):
    scripted.script.answer = lambda request, good: with_content(request, good, echo_prompt(request))
    assert_error(client.post("/score", json={**ANIMALS, "simulator": simulator}), 502, "upstream_error")


def test_batched_refuses_an_echo_of_the_question_alone(client, scripted):
    # "Text 1:" headers with no pairs after them would read as texts of zeros.
    scripted.script.answer = lambda request, good: with_content(request, good, request.last_user_message)
    assert_error(client.post("/score", json={**ANIMALS, "simulator": "batched"}), 502, "upstream_error")


def test_explain_refuses_the_system_prompt_as_an_explanation(client, scripted):
    def answer(request, good):
        system = request.messages[0]["content"]
        return with_content(request, good, system) if EXPLAINER_SYSTEM in system else good

    scripted.script.answer = answer
    assert_error(client.post("/explain", json={"activations": TEXTS}), 502, "upstream_error")


def test_explain_refuses_an_echo_of_the_question(client, scripted):
    def answer(request, good):
        if EXPLAINER_SYSTEM not in request.messages[0]["content"]:
            return good
        return with_content(request, good, request.last_user_message)

    scripted.script.answer = answer
    for style in ("original", "summary", "highlight", "avhs"):
        assert_error(client.post("/explain", json={"activations": TEXTS, "style": style}), 502, "upstream_error")


def test_a_runaway_explanation_is_refused_and_a_short_one_kept(client, scripted):
    replies = iter(["animals " * 2000, "animals " * 2000, "foxes and leopards"])

    def answer(request, good):
        if EXPLAINER_SYSTEM not in request.messages[0]["content"]:
            return good
        return with_content(request, good, next(replies))

    scripted.script.answer = answer
    body = strict_json(client.post("/explain", json={"activations": TEXTS, "n": 2}))
    assert body["explanation"] == "foxes and leopards"
    assert [c["explanation"] for c in body["candidates"]] == ["foxes and leopards"]


def test_an_explanation_cut_mid_line_is_refused_and_a_finished_first_line_kept(client, scripted):
    replies = iter(["animals such as fo", "animals such as foxes\nand then some more pro"])

    def answer(request, good):
        if EXPLAINER_SYSTEM not in request.messages[0]["content"]:
            return good
        good = with_content(request, good, next(replies))
        good["choices"][0]["finish_reason"] = "length"
        return good

    scripted.script.answer = answer
    body = strict_json(client.post("/explain", json={"activations": TEXTS}))
    assert body["explanation"] == "animals such as foxes" and body["usage"]["llm_calls"] == 2


def test_an_explanation_is_one_clean_line(client, scripted):
    def answer(request, good):
        if EXPLAINER_SYSTEM not in request.messages[0]["content"]:
            return good
        return with_content(request, good, "foxes\u2028and\x00 leo\ud800pards\x1b")

    scripted.script.answer = answer
    response = client.post("/explain", json={"activations": TEXTS})
    body = strict_json(response)
    assert body["explanation"] == "foxes and leopards"
    assert "\\ud800" not in response.get_data(as_text=True)


def test_a_json_answer_that_mirrors_the_question_object_is_read(client, scripted):
    def answer(request, good):
        question = json.loads(request.last_user_message)
        values = json.loads(content(good))["activations"]
        for item, value in zip(question["activations"], values):
            item["activation"] = value["activation"]
        return with_content(request, good, json.dumps(question))

    scripted.script.answer = answer
    body = assert_no_500(client.post("/score", json={**ANIMALS, "simulator": "json"}))
    assert body["failures"] == [] and body["score"] > 0.5


def test_an_explanation_equal_to_a_few_shot_example_is_no_echo(client, scripted):
    # The batched and judge prompts show "kitchen utensils and cookware" as their example.
    scored = assert_no_500(client.post("/score", json={**ANIMALS, "explanation": "kitchen utensils and cookware"}))
    assert scored["failures"] == []
    judged = assert_no_500(
        client.post(
            "/score",
            json={**ANIMALS, "explanation": "kitchen utensils and cookware", "scorer": "detection", "judge": "openai"},
        )
    )
    assert judged["failures"] == []


# -- the reader itself ----------------------------------------------------------------------


def test_read_answer_turns_any_parser_exception_into_a_reason():
    completion = Completion(text="whatever")

    def explode(answer):
        raise OverflowError("math range error")

    read = read_answer(completion, explode)
    assert not read.ok and "math range error" in read.reason
    assert read_answer(completion, lambda a: 1 / 0).reason  # ZeroDivisionError too
    assert read_answer(completion, lambda a: a.text.upper()).value == "WHATEVER"


def test_read_answer_refuses_an_echo_found_only_in_the_logprob_tokens():
    echo = PromptEcho.of_parts(["Read the explanation of what the neuron does, then predict."], "")
    tokens = [TokenLogprob(token=t, logprob=-0.1) for t in ("Read the explanation of what ", "the neuron does, then predict.")]
    read = read_answer(Completion(text="0:1", logprobs=tokens), lambda a: a.text, echo=echo)
    assert not read.ok and "repeats the prompt" in read.reason


def test_read_answer_policies_for_a_cut_answer():
    cut = Completion(text="1: yes\n2: n", finish_reason="length")
    assert "cut at the output limit" in read_answer(cut, lambda a: a.text).reason
    assert read_answer(cut, lambda a: a.truncated, truncated=Truncated.COMPLETE_LINES).value is True
    assert read_answer(cut, lambda a: a.truncated, truncated=Truncated.IGNORE).value is False
    assert read_answer(Completion(text="x", finish_reason=None), lambda a: a.text).value == "x"


@pytest.mark.parametrize(
    "data",
    [
        [{"index": "first", "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.3, 0.4]}, {"index": 2, "embedding": [0.3, 0.4]}],
        [{"index": 0, "embedding": ["a", "b"]}, {"index": 1, "embedding": [1e400, 0]}, {"index": 2, "embedding": [1, 0]}],
        [{"index": 0, "embedding": [int(HUGE_DIGITS[:400]), 0]}, {"index": 1, "embedding": [1, 0]}, {"index": 2, "embedding": [1, 0]}],
    ],
)
def test_embeddings_of_an_unusable_shape_are_a_502(make_client, scripted, data):
    scripted.enqueue(StubReply(body={"object": "list", "data": data, "model": "e", "usage": {"prompt_tokens": 3}}))
    client = make_client(
        openai_base_url=scripted.base_url, openai_api_key=API_KEY, embedding_backend="openai",
        llm_max_retries=0, request_timeout=20.0, cache_path="",
    )
    response = client.post("/similarity", json={"explanation": "foxes", "references": ["leopards", "tables"]})
    assert_error(response, 502, "upstream_error")


def test_a_logprob_too_large_for_a_float_in_the_http_body_is_a_502(client, scripted):
    # The client coerces logprobs to float while decoding: OverflowError before any parser runs.
    def answer(request, good):
        text = json.dumps(good)
        return StubReply(body=text.replace('"logprob": -0.01', '"logprob": ' + "9" * 400, 1))

    scripted.script.answer = answer
    assert_error(client.post("/score", json={**ANIMALS, "simulator": "logprob"}), 502, "upstream_error")
