"""The compact simulator: its layout (golden file), every answer shape a model might write,
budget batching and long texts, against the loopback stub.

After an intended change of the prompt, regenerate the golden file with
`UPDATE_GOLDEN=1 python -m pytest tests/test_compact_simulator.py` and read the diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm.cache import SQLiteCache
from llm.tokens import count_message_tokens
from runtime import Runtime
from runtime.settings import Settings
from scorer.simulators import SIMULATORS
from scorer.simulators.compact import (
    CompactSimulator,
    batch_parts,
    build_messages,
    parse_answer,
    references,
    render_text,
    split_parts,
)
from tests.stub_openai import StubReply, chat_body, compact_tokens

GOLDEN = Path(__file__).parent / "golden"

# A split word (spat|ula), a repeated token (" pan" twice; "Pan" is another), "the" three
# times, punctuation joined to a word, a line break, and a token that is only spaces.
TOKENS = ["Put", " the", " pan", " on", " the", " stove", ",", " wipe", " the", " spat", "ula",
          ".", "\n", "  ", "Pan", " pan", "!"]


def parse(answer: str, *texts: list[str]):
    return parse_answer(answer, list(texts) or [TOKENS])


def only(answer: str, tokens: list[str] = TOKENS):
    return parse(answer, tokens)[0]


def nonzero(values) -> dict[int, float]:
    assert isinstance(values, list), values
    return {i: v for i, v in enumerate(values) if v}


# -- layout ------------------------------------------------------------------------------


def test_layout_shows_each_text_once_and_marks_joins():
    assert render_text(TOKENS) == "Put the pan on the stove|, wipe the spat|ula|.\\n  Pan pan|!"
    assert render_text(["The", "<|endoftext|>", "\t", "x"]) == "The|<end-of-text>\\tx"


def test_references_name_each_token_once():
    refs = references(TOKENS)
    assert refs[2] == '"pan"#1' and refs[15] == '"pan"#2' and refs[14] == '"Pan"'
    assert refs[1] == '"the"#1' and refs[8] == '"the"#3' and refs[10] == '"ula"'
    assert refs[12] == '"\\n"' and refs[13] == ""  # spaces only: cannot be named
    # Every reference reads back as the one token it names.
    for i, ref in enumerate(refs):
        if ref:
            assert nonzero(only(f"1: {ref}=7")) == {i: 7.0}


def test_prompt_matches_golden():
    messages = build_messages(
        "cooking  tools\n(pans)", [TOKENS, ["A", " whisk", "."]], rejection="'pan' appears 2 times"
    )
    text = "".join(f"=== {m['role']} ===\n{m['content']}\n" for m in messages)
    path = GOLDEN / "simulate_compact.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_stable_part_first_explanation_last():
    a = build_messages("fast animals", [TOKENS])
    b = build_messages("kitchen tools", [TOKENS])
    assert a[:-1] == b[:-1]  # instructions and the worked example: the same for every call
    last_a, last_b = a[-1]["content"], b[-1]["content"]
    assert last_a.startswith("Text 1: ") and last_a.endswith('Explanation (quoted): "fast animals"')
    shared = last_a.rsplit("Explanation (quoted):", 1)[0]
    assert last_b.startswith(shared)  # the texts too, when only the explanation changes


def test_standard_workload_within_the_input_budget():
    from bench.workload import standard_request

    request = standard_request("military units such as brigades")
    texts = [a["tokens"] for a in request["activations"]]
    assert count_message_tokens(build_messages(request["explanation"], texts)) <= 2700


# -- answer shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('1: "stove"=5', {5: 5.0}),
        ("1: stove=5", {5: 5.0}),  # unquoted
        ('1: "stove": 5', {5: 5.0}),
        ('1: " stove"=5', {5: 5.0}),  # with its leading space
        ('1: "stove" = 5, "spat"=7; "ula"=8', {5: 5.0, 9: 7.0, 10: 8.0}),
        ('1: "stove"=5 "ula"=8', {5: 5.0, 10: 8.0}),  # spaces only between items
        ('1: "pan"#1=10, "pan"#2=9', {2: 10.0, 15: 9.0}),
        ('1: "pan" #2 = 9', {15: 9.0}),
        ('1: "stove"#1=5', {5: 5.0}),  # #1 of a token that appears once
        ('1: "Pan"=6', {14: 6.0}),  # case tells "Pan" from "pan"
        ('1: ","=3, "."=2, "!"=1', {6: 3.0, 11: 2.0, 16: 1.0}),
        ('1: "\\n"=4', {12: 4.0}),  # a line break, as the prompt writes it
        ('1: "stove"=5.5', {5: 5.5}),
        ('1: "stove"=15, "ula"=-2', {5: 10.0}),  # clamped to 0-10
        ('1: "stove"=0', {}),
        ('1: "stove"=5, "stove"=5', {5: 5.0}),  # the same token twice with one value
        ('1: "stove"=5.', {5: 5.0}),  # a closing full stop
        ("Text 1: stove=5", {5: 5.0}),
        ("**1:** stove=5", {5: 5.0}),
        ("- 1: stove=5", {5: 5.0}),
        ("1:", {}),
        ("1: none", {}),
        ("1: -", {}),
        ("Here are the activations:\n1: stove=5\nThat is all.", {5: 5.0}),
        ("```\n1: stove=5\n```", {5: 5.0}),
    ],
)
def test_answer_shapes_that_name_one_token_each(answer, expected):
    assert nonzero(only(answer)) == expected


@pytest.mark.parametrize(
    "answer, reason",
    [
        ('1: "pan"=10', "appears 2 times"),  # which one? never a guess, never both
        ('1: "the"=2', "appears 3 times"),
        ('1: "pan"#3=10', "appears 2 times"),
        ('1: "stove"#2=5', "appears once"),
        ('1: "pan"#0=10', "appears 2 times"),
        ('1: "spatula"=8', "not a token"),  # a word of two tokens
        ('1: "spat|ula"=8', "not a token"),
        ('1: "stove,"=5', "not a token"),
        ('1: "oven"=5', "not a token"),
        ('1: "STOVE"=5', "not a token"),  # no guess about case
        ('1: ""=5', "not a token"),  # the spaces-only token cannot be named
        ('1: "stove"=5, "stove"=6', "two values"),
        ("1: stove=high", "unreadable"),
        ("1: stove=8/10", "unreadable"),
        ("1: stove 5", "unreadable"),
        ("1: {\"stove\": 5}", "unreadable"),
        ("1: 5=8", "not a token"),  # an index, as batched would write it
        ('1: "stove"=5"ula"=8', "unreadable"),  # items run together
        ("1: Put the pan on the stove, wipe the spat|ula", "unreadable"),  # the text echoed
        ("", "no line"),
        ("2: stove=5", "no line"),
        ("1: stove=5\n1: ula=8", "two lines"),
        ('1:\n"stove"=5', "more than one line"),
        ('1: "stove"=5,\n"ula"=8', "more than one line"),
    ],
)
def test_answers_that_do_not_name_exactly_one_token_fail_the_text(answer, reason):
    result = only(answer)
    assert isinstance(result, str) and reason in result, result


def test_one_text_failing_leaves_the_others_scored():
    other = ["A", " whisk", "."]
    result = parse('1: "oven"=5\n2: "whisk"=9\n3:', TOKENS, other, other)
    assert isinstance(result[0], str)
    assert nonzero(result[1]) == {1: 9.0} and nonzero(result[2]) == {}


def test_lines_for_texts_outside_the_batch_are_ignored():
    result = parse("1: stove=5\n7: stove=5\n0: x=1")
    assert nonzero(result[0]) == {5: 5.0}


def test_an_answer_cut_at_the_output_limit_fails_its_last_line():
    other = ["A", " whisk", "."]
    result = parse_answer('1: "stove"=5\n2: "whisk"=9', [TOKENS, other, other], truncated=True)
    assert nonzero(result[0]) == {5: 5.0}
    assert "cut at the output limit" in result[1] and "no line" in result[2]


# -- batches and long texts ----------------------------------------------------------------


def test_budget_not_count_decides_the_batches():
    lengths = [64] * 20
    parts = split_parts(lengths, range(20), 2048)
    assert len(batch_parts(parts, 2048)) == 1
    assert [len(b) for b in batch_parts(split_parts([64] * 200, range(200), 2048), 2048)] == [32] * 6 + [8]


def test_long_texts_are_split_into_even_parts_within_the_budget():
    parts = split_parts([10, 250, 3], [0, 1, 2], 100)
    spans = [(p.text, p.start, p.end) for p in parts]
    assert spans == [(0, 0, 10), (1, 0, 84), (1, 84, 168), (1, 168, 250), (2, 0, 3)]
    assert all(p.end - p.start <= 100 for p in parts)


def make(stub_backend, **kwargs):
    return CompactSimulator(stub_backend, "stub-model", kwargs.pop("cache", None), 4, **kwargs)


TEXTS = [
    ["The", " quick", " fox", "…", "\n", " jumps", "<|endoftext|>", " $", "5"],
    ["•", " lazy", " dog", "\t", ".", " dog"],
    ["Nothing", " here", " at", " all"],
]


def test_against_the_stub_one_call_and_exact_alignment(stub_openai, stub_backend):
    run = make(stub_backend).simulate("the words fox and dog", TEXTS)
    assert run.failures == []
    assert [s.expected_activations for s in run.simulations] == [
        [0, 0, 9, 0, 0, 0, 0, 0, 0], [0, 0, 9, 0, 0, 9], [0, 0, 0, 0]
    ]
    assert [s.tokens for s in run.simulations] == TEXTS
    assert stub_openai.calls() == 1 == run.usage.llm_calls
    assert 0 < run.usage.completion_tokens < 30  # proportional to the active tokens


def test_a_long_text_is_asked_in_parts_and_put_back_together(stub_openai, stub_backend):
    long = ([" fox", " and", " the", " cat"] * 40)[:150]
    run = make(stub_backend, batch_tokens=64).simulate("fox", [long, TEXTS[2]])
    assert run.failures == []
    assert run.simulations[0].expected_activations == [9.0 if t == " fox" else 0.0 for t in long]
    assert stub_openai.calls() == 3  # 150 tokens in three parts of 50; the short text rides along
    shown = [r.last_user_message.count("\nText ") + 1 for r in stub_openai.requests]
    assert sorted(shown) == [1, 1, 2]


def test_an_ambiguous_answer_is_asked_again_once_for_that_text_only(stub_openai, stub_backend):
    original = stub_openai.handler

    def handler(request):
        if len(stub_openai.requests) == 1:
            return chat_body(request, '1: "fox"=9\n2: "dog"=9\n3:')  # "dog" is there twice
        return original(request)

    stub_openai.handler = handler
    run = make(stub_backend).simulate("the words fox and dog", TEXTS)
    assert run.failures == []
    assert run.simulations[1].expected_activations == [0, 0, 9, 0, 0, 9]
    retry = stub_openai.requests[1].last_user_message
    assert retry.startswith("Text 1: • lazy dog\\t. dog\n") and retry.count("Text ") == 1
    assert "appears 2 times" in retry  # the rejection names the problem
    assert run.usage.llm_calls == 2


def test_unusable_twice_is_a_reported_failure_never_zeros(stub_openai, stub_backend):
    def handler(request):
        if "Text 3:" in request.last_user_message:
            return chat_body(request, '1: "fox"=9\n2: "dog"=9\n3:')
        return chat_body(request, '1: "dog"=9')  # the re-ask: the same ambiguity

    stub_openai.handler = handler
    run = make(stub_backend).simulate("the words fox and dog", TEXTS)
    assert [f.index for f in run.failures] == [1]
    assert "after 2 attempts" in run.failures[0].reason and "appears 2 times" in run.failures[0].reason
    assert run.simulations[1] is None and run.simulations[0] is not None
    assert stub_openai.calls() == 2


def test_a_part_that_fails_fails_its_whole_text(stub_openai, stub_backend):
    long = [" fox"] + [" cat"] * 99

    def handler(request):
        if "fox" in request.last_user_message.split("Explanation:")[0]:
            return chat_body(request, '1: "fox"=9')
        return chat_body(request, "1: oops")  # the second part: always unusable

    stub_openai.handler = handler
    run = make(stub_backend, batch_tokens=60).simulate("fox", [long])
    assert [f.index for f in run.failures] == [0] and run.simulations == [None]
    assert stub_openai.calls() == 3  # two parts, and the failed one asked again


def test_backend_error_fails_the_batch_without_a_retry(stub_openai, stub_backend):
    stub_openai.enqueue(StubReply(status=400))
    run = make(stub_backend).simulate("fox", TEXTS)
    assert [f.index for f in run.failures] == [0, 1, 2]
    assert all("backend error" in f.reason for f in run.failures)
    assert stub_openai.calls() == 1


def test_cache_per_text_whatever_the_batch(stub_openai, stub_backend, tmp_path):
    cache = SQLiteCache(str(tmp_path / "c.sqlite3"))
    make(stub_backend, cache=cache).simulate("fox and dog", TEXTS[:2])
    stub_openai.reset()
    run = make(stub_backend, cache=cache).simulate("fox and dog", TEXTS)
    assert run.usage.cache_hits == 2 and stub_openai.calls() == 1
    assert stub_openai.requests[0].last_user_message.startswith("Text 1: Nothing here")


def test_registry_passes_the_batch_budget():
    assert "compact" in SIMULATORS and "batched" in SIMULATORS and "json" in SIMULATORS

    class Backend:
        name = "fake"
        capabilities = frozenset({"chat"})

    runtime = Runtime(Settings(cache_path="", openai_base_url="http://x/v1", simulator_batch_tokens=300),
                      backend=Backend())
    assert runtime.simulator("compact").batch_tokens == 300
    assert runtime.simulator("batched").max_batch_tokens == 300


def test_stub_reads_the_layout_back_into_tokens():
    assert compact_tokens(render_text(TEXTS[0])) == ["The", "quick", "fox", "…", "\\n", "jumps", "<end-of-text>", "$", "5"]


def test_tokens_with_quotes_and_signs_are_quoted_with_escapes():
    tokens = ["He", " said", ' "', "Wait", '."', " a", " ==", " b"]
    assert render_text(tokens) == 'He said "|Wait|." a == b'
    assert nonzero(only('1: ".\\""=8', tokens)) == {4: 8.0}
    assert nonzero(only('1: "\\""=2', tokens)) == {2: 2.0}
    assert nonzero(only('1: "=="=3', tokens)) == {6: 3.0}
    assert isinstance(only('1: ."=8', tokens), str)  # unquoted, the quote mark breaks the item
    for i, ref in enumerate(references(tokens)):
        assert nonzero(only(f"1: {ref}=5", tokens)) == {i: 5.0}


def test_a_literal_bar_in_a_token_is_escaped_so_a_bare_bar_is_always_a_join():
    tokens = ["x", "|", "y", " ||", " z"]
    assert render_text(tokens) == "x|\\||y \\|\\| z"
    assert compact_tokens(render_text(tokens)) == ["x", "\\|", "y", "\\|\\|", "z"]
    assert nonzero(only('1: "\\|"=4', tokens)) == {1: 4.0}
    assert nonzero(only('1: "\\|\\|"=6', tokens)) == {3: 6.0}
    assert "not a token" in only('1: "|"=4', tokens)
