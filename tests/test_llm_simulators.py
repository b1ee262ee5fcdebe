"""The LLM simulators against the loopback stub: alignment, clamping, retries, failures, cache, speed."""
from __future__ import annotations

import math
import re
import time

import pytest

from llm.backend import Completion, TokenLogprob
from llm.cache import SQLiteCache
from llm.errors import BackendUnavailable, DeadlineExceeded, UpstreamError
from scorer.simulators.all_at_once import AllAtOnceSimulator
from scorer.simulators.all_at_once import build_prompt as all_at_once_prompt
from scorer.simulators.all_at_once import parse_answer as parse_all_at_once
from scorer.simulators.batched import BatchedSimulator
from scorer.simulators.batched import parse_answer as parse_batched
from scorer.simulators.json_per_text import JsonPerTextSimulator
from scorer.simulators.json_per_text import parse_answer as parse_json
from scorer.simulators.logprob_ev import LogprobEVSimulator
from scorer.simulators.logprob_ev import parse_answer as parse_logprob
from scorer.simulators.prompts import (
    LogprobsUnsupported,
    ParseError,
    digit_distribution,
    expected_value,
    render_token,
)
from tests.stub_openai import (
    SimulationResponder,
    StubReply,
    chat_body,
    completion_body,
    error_body,
    keyword_oracle,
)

ALL = [JsonPerTextSimulator, BatchedSimulator, LogprobEVSimulator, AllAtOnceSimulator]
# Formats whose answer is a written number (all_at_once reads probabilities only).
WRITTEN = [JsonPerTextSimulator, BatchedSimulator, LogprobEVSimulator]

EXPLANATION = "the words fox and dog"
# Tokens models like to drop or rewrite; alignment must not depend on them.
TEXTS = [
    ["The", " quick", " fox", "…", "\n", " jumps", "<|endoftext|>", " $", "5"],
    ["•", " lazy", " dog", "\t", "."],
    ["Nothing", " here", " at", " all"],
]
ORACLE = [[0, 0, 9, 0, 0, 0, 0, 0, 0], [0, 0, 9, 0, 0], [0, 0, 0, 0]]


def make(cls, backend, **kwargs):
    return cls(backend, "stub-model", kwargs.pop("cache", None), kwargs.pop("concurrency", 4), **kwargs)


def values(run):
    return [None if s is None else [round(x, 6) for x in s.expected_activations] for s in run.simulations]


def expected_for(cls, oracle_values):
    if cls in (LogprobEVSimulator, AllAtOnceSimulator):
        # The stub gives the oracle's value 0.9 and a neighbour 0.1.
        return [[round(0.9 * v + 0.1 * (v - 1 if v > 0 else 1), 6) for v in text] for text in oracle_values]
    return [[float(v) for v in text] for text in oracle_values]


# -- alignment and the happy path --------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_predictions_align_by_position_and_tokens_stay_untouched(cls, stub_openai, stub_backend):
    run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS)
    assert run.failures == []
    assert values(run) == expected_for(cls, ORACLE)
    for simulation, tokens in zip(run.simulations, TEXTS):
        assert simulation.tokens == tokens
        assert simulation.to_dict()["tokens"] == tokens
    assert run.usage.llm_calls == stub_openai.calls()
    assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
    assert not run.usage.estimated and run.usage.cache_hits == 0


@pytest.mark.parametrize("cls", [LogprobEVSimulator, AllAtOnceSimulator])
def test_logprob_formats_fill_the_distributions(cls, stub_openai, stub_backend):
    run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS[:1])
    simulation = run.simulations[0]
    assert len(simulation.distribution_values) == len(TEXTS[0])
    assert simulation.distribution_values[2] == [8.0, 9.0]
    assert simulation.distribution_probabilities[2] == pytest.approx([0.1, 0.9])
    assert simulation.distribution_values[0] == [0.0, 1.0]


@pytest.mark.parametrize("cls", [JsonPerTextSimulator, BatchedSimulator])
def test_written_formats_have_no_distribution(cls, stub_openai, stub_backend):
    simulation = make(cls, stub_backend).simulate(EXPLANATION, TEXTS[:1]).simulations[0]
    assert simulation.distribution_values == [] and simulation.distribution_probabilities == []


def test_usage_is_estimated_when_the_server_sends_none(stub_openai, stub_backend):
    stub_openai.handler = SimulationResponder(usage=False)
    run = make(JsonPerTextSimulator, stub_backend).simulate(EXPLANATION, TEXTS[:1])
    assert run.usage.estimated and run.usage.prompt_tokens > 0


# -- clamping, retries, failures -----------------------------------------------------------


@pytest.mark.parametrize("cls", WRITTEN)
def test_values_out_of_range_are_clamped(cls, stub_openai, stub_backend):
    stub_openai.handler = SimulationResponder(
        lambda explanation, tokens: [15, -3] + [0] * (len(tokens) - 2), confidence=1.0
    )
    run = make(cls, stub_backend).simulate(EXPLANATION, [["a", "b", "c"]])
    assert values(run) == [[10.0, 0.0, 0.0]]


def _first_bad(bad_reply, good=None):
    """A handler whose first answer is `bad_reply(request)` and the rest sensible."""
    good = good or SimulationResponder()
    state = {"calls": 0}

    def handler(request):
        state["calls"] += 1
        return bad_reply(request) if state["calls"] == 1 else good(request)

    return handler


def _garbage(request):
    """An answer in no format, with logprobs where they were asked for."""
    if request.is_chat:
        text = "I think the fox is the most active token!"
        logprobs = [(text, [(text, -0.1)])] if request.body.get("logprobs") else None
        return chat_body(request, text, logprobs=logprobs)
    return completion_body(request, [request.prompt], [{"x": -0.1}])


@pytest.mark.parametrize("cls", ALL)
def test_malformed_answer_is_retried_once_then_succeeds(cls, stub_openai, stub_backend):
    stub_openai.handler = _first_bad(_garbage)
    run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS[:1])
    assert run.failures == []
    assert values(run) == expected_for(cls, ORACLE[:1])
    assert stub_openai.calls() == 2
    assert run.usage.llm_calls == 2
    if cls is not AllAtOnceSimulator:  # the retry tells the model what went wrong
        assert "could not be used" in stub_openai.requests[1].last_user_message


def _wrong_length(explanation, tokens):
    return keyword_oracle(explanation, tokens)[:-1]


@pytest.mark.parametrize("cls", [JsonPerTextSimulator, LogprobEVSimulator])
def test_wrong_number_of_items_twice_is_a_reported_failure(cls, stub_openai, stub_backend):
    stub_openai.handler = SimulationResponder(_wrong_length)
    run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS[:2])
    assert run.simulations == [None, None]
    assert [f.index for f in run.failures] == [0, 1]
    assert all("after 2 attempts" in f.reason and "for" in f.reason for f in run.failures)
    assert "8 activations for 9 tokens" in run.failures[0].reason
    assert stub_openai.calls() == 4


def test_json_malformed_twice_is_a_reported_failure(stub_openai, stub_backend):
    stub_openai.handler = lambda request: chat_body(request, '{"activations": [1, 2,')
    run = make(JsonPerTextSimulator, stub_backend).simulate(EXPLANATION, TEXTS[:1])
    assert run.simulations == [None]
    assert "not valid JSON" in run.failures[0].reason


def test_all_at_once_without_digits_in_a_slot_fails_the_text(stub_openai, stub_backend):
    def no_digits(request):
        reply = SimulationResponder()(request)
        logprobs = reply["choices"][0]["logprobs"]
        logprobs["top_logprobs"] = [
            {"unknown": -0.1} if tok == "unknown" else top
            for tok, top in zip(logprobs["tokens"], logprobs["top_logprobs"])
        ]
        return reply

    stub_openai.handler = no_digits
    run = make(AllAtOnceSimulator, stub_backend).simulate(EXPLANATION, TEXTS[:1])
    assert run.simulations == [None]
    assert "no value 0-10" in run.failures[0].reason


@pytest.mark.parametrize("cls", WRITTEN)
def test_some_texts_fail_and_the_others_are_scored(cls, stub_openai, stub_backend):
    def short_for_bullet(explanation, tokens):
        out = keyword_oracle(explanation, tokens)
        return out[:-1] if tokens[0] == "•" else out

    stub_openai.handler = (
        _batched_bad_index_for_bullet_text() if cls is BatchedSimulator else SimulationResponder(short_for_bullet)
    )
    run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS)
    assert run.simulations[1] is None
    assert run.simulations[0] is not None and run.simulations[2] is not None
    assert [f.index for f in run.failures] == [1]
    assert "after 2 attempts" in run.failures[0].reason


def _batched_bad_index_for_bullet_text():
    """Sparse answers cannot be short: a token index past the end is their wrong count."""
    good = SimulationResponder()

    def handler(request):
        reply = good(request)
        bullet = re.search(r"^Text (\d+):\n0\t•", request.last_user_message, re.M)
        if bullet:
            content = reply["choices"][0]["message"]["content"]
            lines = [
                f"{bullet.group(1)}: 99=4" if line.split(":")[0] == bullet.group(1) else line
                for line in content.split("\n")
            ]
            reply["choices"][0]["message"]["content"] = "\n".join(lines)
        return reply

    return handler


def test_batched_missing_line_is_retried_for_that_text_only(stub_openai, stub_backend):
    good = SimulationResponder()

    def drop_text_two_once(request):
        reply = good(request)
        if len(stub_openai.requests) == 1:
            content = reply["choices"][0]["message"]["content"]
            kept = [line for line in content.split("\n") if not line.startswith("2:")]
            reply["choices"][0]["message"]["content"] = "\n".join(kept)
        return reply

    stub_openai.handler = drop_text_two_once
    run = make(BatchedSimulator, stub_backend).simulate(EXPLANATION, TEXTS)
    assert run.failures == []
    assert values(run) == expected_for(BatchedSimulator, ORACLE)
    assert stub_openai.calls() == 2
    retry = stub_openai.requests[1].last_user_message
    assert "Text 1:\n0\t•" in retry and "Text 2:" not in retry  # only the missing text again
    assert "no line for this text" in retry


def test_batched_splits_texts_into_batches(stub_openai, stub_backend):
    texts = [[f"w{i}", " fox", " tail"] for i in range(23)]
    run = make(BatchedSimulator, stub_backend, batch_size=10).simulate(EXPLANATION, texts)
    assert run.failures == [] and stub_openai.calls() == 3
    assert all(s.expected_activations == [0.0, 9.0, 0.0] for s in run.simulations)
    run = make(BatchedSimulator, stub_backend, batch_size=50, max_batch_tokens=30).simulate(EXPLANATION, texts)
    assert stub_openai.calls() == 3 + 3


def test_backend_errors_become_text_failures(stub_openai, stub_backend):
    for cls in ALL:
        stub_openai.reset()
        stub_openai.enqueue(*[StubReply(401, error_body("Incorrect API key provided: sk-test-key-0123456789"))] * 10)
        run = make(cls, stub_backend).simulate(EXPLANATION, TEXTS[:2])
        assert run.simulations == [None, None], cls.name
        assert all("401" in f.reason and "sk-test" not in f.reason for f in run.failures)
        assert stub_openai.calls() == (1 if cls is BatchedSimulator else 2)  # no retry of a 401


@pytest.mark.parametrize("cls", ALL)
def test_unreachable_backend_propagates(cls, refused_base_url, make_backend):
    backend = make_backend(refused_base_url, max_retries=0)
    with pytest.raises(BackendUnavailable):
        make(cls, backend).simulate(EXPLANATION, TEXTS)


@pytest.mark.parametrize("cls", ALL)
def test_deadline_propagates_in_time(cls, stub_openai, stub_backend):
    stub_openai.delay = 2.0
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        make(cls, stub_backend).simulate(EXPLANATION, TEXTS, deadline=time.monotonic() + 0.4)
    assert time.monotonic() - started < 0.4 + 0.5


@pytest.mark.parametrize("cls", [LogprobEVSimulator, AllAtOnceSimulator])
def test_servers_without_logprobs_get_a_clear_error(cls, stub_openai, stub_backend):
    def plain(request):
        if request.is_chat:
            return chat_body(request, "0:0\n1:0")
        return completion_body(request, [request.prompt], None)

    stub_openai.handler = plain
    with pytest.raises(LogprobsUnsupported, match="logprobs") as info:
        make(cls, stub_backend).simulate(EXPLANATION, [["a", "b"]])
    assert isinstance(info.value, UpstreamError)


# -- cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_a_cache_hit_makes_no_call(cls, stub_openai, stub_backend, tmp_path):
    cache = SQLiteCache(str(tmp_path / "cache.sqlite3"))
    first = make(cls, stub_backend, cache=cache).simulate(EXPLANATION, TEXTS)
    calls = stub_openai.calls()
    again = make(cls, stub_backend, cache=cache).simulate(EXPLANATION, TEXTS)
    assert stub_openai.calls() == calls
    assert again.usage.llm_calls == 0 and again.usage.total_tokens == 0
    assert again.usage.cache_hits == len(TEXTS)
    assert [s.to_dict() for s in again.simulations] == [s.to_dict() for s in first.simulations]
    # A different explanation is a different question.
    make(cls, stub_backend, cache=cache).simulate("cats", TEXTS[:1])
    assert stub_openai.calls() > calls


def test_failures_are_not_cached(stub_openai, stub_backend, tmp_path):
    cache = SQLiteCache(str(tmp_path / "cache.sqlite3"))
    stub_openai.handler = SimulationResponder(_wrong_length)
    make(JsonPerTextSimulator, stub_backend, cache=cache).simulate(EXPLANATION, TEXTS[:1])
    stub_openai.handler = SimulationResponder()
    run = make(JsonPerTextSimulator, stub_backend, cache=cache).simulate(EXPLANATION, TEXTS[:1])
    assert run.failures == [] and run.usage.cache_hits == 0


def test_cache_key_covers_model_and_format(stub_openai, stub_backend, tmp_path):
    cache = SQLiteCache(str(tmp_path / "cache.sqlite3"))
    JsonPerTextSimulator(stub_backend, "model-a", cache).simulate(EXPLANATION, TEXTS[:1])
    JsonPerTextSimulator(stub_backend, "model-b", cache).simulate(EXPLANATION, TEXTS[:1])
    BatchedSimulator(stub_backend, "model-a", cache).simulate(EXPLANATION, TEXTS[:1])
    assert stub_openai.calls() == 3


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_texts_run_in_parallel(cls, stub_openai, stub_backend):
    stub_openai.delay = 0.3
    texts = [[f"t{i}", " fox", " and", " more"] for i in range(20)]
    started = time.monotonic()
    run = make(cls, stub_backend, concurrency=8).simulate(EXPLANATION, texts, deadline=time.monotonic() + 20)
    elapsed = time.monotonic() - started
    assert run.failures == []
    assert elapsed < 3.0  # sequential calls would take 20 x 0.3 = 6 s


# -- the logprob arithmetic by hand ----------------------------------------------------------


def test_logprob_expected_value_by_hand(stub_openai, stub_backend):
    top = [("3", math.log(0.5)), ("4", math.log(0.3)), (" 2", math.log(0.1)), ("the", math.log(0.1))]
    stub_openai.handler = lambda request: chat_body(
        request, "0:3", logprobs=[("0", [("0", -0.01)]), (":", [(":", -0.01)]), ("3", top)]
    )
    simulation = make(LogprobEVSimulator, stub_backend).simulate(EXPLANATION, [["fox"]]).simulations[0]
    # The values found are 2, 3 and 4 with mass 0.1, 0.5, 0.3: renormalised over 0.9.
    assert simulation.expected_activations[0] == pytest.approx((2 * 0.1 + 3 * 0.5 + 4 * 0.3) / 0.9)
    assert simulation.distribution_values == [[2.0, 3.0, 4.0]]
    assert simulation.distribution_probabilities[0] == pytest.approx([0.1 / 0.9, 0.5 / 0.9, 0.3 / 0.9])


def test_all_at_once_expected_value_by_hand():
    tokens = ["dog"]
    prompt = all_at_once_prompt(EXPLANATION, tokens)
    assert prompt.endswith("<start>\ndog\tunknown\n<end>\n")
    pieces = [TokenLogprob("...", math.nan), TokenLogprob("dog", -1.0), TokenLogprob("\t", -0.1),
              TokenLogprob("unknown", -9.0, (("0", math.log(0.2)), ("10", math.log(0.6)), ("x", math.log(0.2)))),
              TokenLogprob("\n", -0.1)]
    simulation = parse_all_at_once(Completion(text=prompt, logprobs=pieces), tokens)
    assert simulation.expected_activations == [pytest.approx(10 * 0.6 / 0.8)]
    assert simulation.distribution_values == [[0.0, 10.0]]


def test_logprob_reads_the_value_token_wherever_the_tokenizer_cut():
    # " 7" carries a space: its alternatives do too.
    pieces = [TokenLogprob("0", -0.1, (("0", -0.1),)), TokenLogprob(":", -0.1, ((":", -0.1),)),
              TokenLogprob(" 7", math.log(0.5), ((" 7", math.log(0.5)), (" 5", math.log(0.5)), ("7", -0.1)))]
    simulation = parse_logprob(Completion(text="0: 7", logprobs=pieces), ["x"])
    assert simulation.expected_activations == [pytest.approx(6.0)]


def test_digit_distribution_and_expected_value():
    dist = digit_distribution([("1", math.log(0.25)), (" 1", math.log(0.25)), ("9", math.log(0.5)), ("11", 0.0)])
    assert dist == {1: pytest.approx(0.5), 9: pytest.approx(0.5)}
    assert expected_value(dist) == pytest.approx(5.0)
    assert digit_distribution([("a", 0.0)]) == {}
    assert digit_distribution([("\t3", -0.1), ("3", -0.1)], prefix="\t") == {3: 1.0}


# -- parsers ------------------------------------------------------------------------------------


def test_json_parser():
    assert parse_json('```json\n{"activations": [{"token": "a", "activation": 3}, {"activation": "12"}]}\n```', 2) == [3.0, 10.0]
    assert parse_json("[1, 2.5]", 2) == [1.0, 2.5]
    assert parse_json('Sure! {"activations": [{"token": "zzz", "activation": 0}]} Done.', 1) == [0.0]
    for bad, reason in [
        ('{"activations": [{"token": "a"}]}', "activations[0]"),
        ('{"activations": [{"activation": null}]}', "activations[0]"),
        ('{"activations": [{"activation": true}]}', "activations[0]"),
        ('{"activations": [1, 2]}', "2 activations for 1 tokens"),
        ('{"values": [1]}', '"activations"'),
        ("nope", "not valid JSON"),
    ]:
        with pytest.raises(ParseError, match=reason.replace("[", r"\[").replace("]", r"\]")):
            parse_json(bad, 1)


def test_batched_parser():
    text = "Here you go:\n1: 0=3 2=12\n**2:**\ntext 3: none\n4: 1 = 2, 0=-1"
    assert parse_batched(text, [3, 2, 2, 2]) == [[3.0, 0.0, 10.0], [0.0, 0.0], [0.0, 0.0], [0.0, 2.0]]
    results = parse_batched("1: 5=3\n2: fox=3\n1: 0=1\n3: 0=1", [3, 2, 2, 2])
    assert results[0] == "the answer had two lines for this text"
    assert "unreadable" in results[1]
    assert results[2] == [1.0, 0.0]
    assert results[3] == "the answer had no line for this text"
    assert "out of range" in parse_batched("1: 5=3", [3])[0]


def test_rendering_keeps_lines_intact():
    assert render_token("\n") == "\\n" and render_token("a\tb") == "a\\tb"
    assert render_token("<|endoftext|>") == "<end-of-text>"
    assert render_token(" fox") == " fox"


# -- cost -----------------------------------------------------------------------------------------


def test_batched_costs_at_least_five_times_fewer_tokens_than_json(stub_openai, stub_backend):
    words = [" the", " army", " moved", " north", " with", " a", " brigade", " of", " men", ",", " and"]
    texts = [[words[(i * 7 + j * 3) % len(words)] for j in range(64)] for i in range(20)]
    explanation = "military units such as a brigade"
    json_run = make(JsonPerTextSimulator, stub_backend, concurrency=8).simulate(explanation, texts)
    batched_run = make(BatchedSimulator, stub_backend, concurrency=8).simulate(explanation, texts)
    assert json_run.failures == [] and batched_run.failures == []
    assert [s.expected_activations for s in json_run.simulations] == [
        s.expected_activations for s in batched_run.simulations
    ]
    assert batched_run.usage.llm_calls == 2
    assert json_run.usage.total_tokens >= 5 * batched_run.usage.total_tokens
