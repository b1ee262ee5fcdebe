"""Backend fuzzing: random and adversarial answers in every format become values or failures.

Each example draws an answer: pieces of an honest answer mixed with numbers of
hundreds or thousands of digits, NaN/inf strings, JSON nested deep, prose, lone
surrogates, control characters, the prompt echoed back, wrong text counts, a
finish_reason that is not "stop" and a cut, and logprobs from -inf to +1e308.

- unit level: the answer goes straight into each format's reader (simulators, the
  judge, the explainer, the hypothesis proposer) through a fake backend; every
  text must come out as finite values in 0-10 of the right length or as a listed
  failure, and nothing but an LLM error may be raised;
- end to end: the loopback stub serves the answer over HTTP and the Flask app
  must answer /score (each simulator, detection, fuzzing) and /explain with 200
  or 502 and valid JSON, never a 500.

Example counts are modest so that the file runs in well under 30 s; FUZZ_EXAMPLES
multiplies them for a longer run. The counts are recorded in bench/RESULTS.md.
"""
from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explainer.explain import explain
from explainer.search.propose import read_proposal
from llm.answers import as_finish_reason, as_model, as_text, as_token_logprob
from llm.backend import Completion
from llm.errors import LLMError
from runtime import Runtime
from runtime.settings import Settings
from scorer.judge import judge
from scorer.simulators.all_at_once import AllAtOnceSimulator
from scorer.simulators.batched import BatchedSimulator
from scorer.simulators.compact import CompactSimulator
from scorer.simulators.json_per_text import JsonPerTextSimulator
from scorer.simulators.logprob_ev import LogprobEVSimulator
from server import create_app
from tests.stub_openai import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    JudgeResponder,
    StubOpenAI,
    StubReply,
    StubRequest,
    chat_body,
    echo_prompt,
)
from tests.test_api_score import strict_json

SCALE = max(1, int(os.environ.get("FUZZ_EXAMPLES", "1")))
UNIT_EXAMPLES = 60 * SCALE  # per format
E2E_EXAMPLES = 8 * SCALE  # per route and format

EXPLAINER_MARK = "units of a language model"
TEXTS = [
    ["the", " quick", " brown", " fox"],
    ["a", " table", " and", " chairs"],
    ["the", " spotted", " leopard", " sprints", " at", " dawn"],
]
VALUES = [[0, 0.5, 0, 2.5], [0, 0, 0, 0], [0, 1.0, 3.0, 0, 0, 0], ]
EXPLANATION = "fox and leopard"

# -- what a hostile backend writes -----------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-20, 20).map(str),
    st.sampled_from(
        ["9" * 400, "7" * 5000, "1e999", "-1e999", "NaN", "nan", "inf", "-Infinity", "1e-400",
         "0x1f", "1_0", "٣", "10.", ".5", "3.14159265358979323846264338327950288", "-0"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
INDEX = st.one_of(st.integers(0, 8), st.sampled_from([10**7, 10**40]), st.just("1" * 4500))
JUNK = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b[2J", "\u2028", "\ufeff", "```", "**", "null", "{", "}"]),
)


@st.composite
def piece(draw):
    kind = draw(
        st.sampled_from(
            ["good", "good", "echo", "system", "question", "batched", "compact", "judge", "logprob", "json", "nest",
             "junk", "long"]
        )
    )
    if kind == "batched":
        pairs = draw(st.lists(st.tuples(INDEX, NUMBERS), max_size=5))
        return ("text", f"{draw(INDEX)}: " + " ".join(f"{i}={v}" for i, v in pairs))
    if kind == "compact":
        items = draw(st.lists(st.tuples(st.sampled_from(['"fox"', '"the"#2', '"fox"#9', '"ghost"', '""', '"\\"']), NUMBERS),
                              max_size=5))
        return ("text", f"{draw(INDEX)}: " + ", ".join(f"{q}={v}" for q, v in items))
    if kind == "judge":
        return ("text", f"{draw(INDEX)}: {draw(st.sampled_from(['yes', 'no', 'YES', 'maybe', '']))}")
    if kind == "logprob":
        return ("text", f"{draw(INDEX)}:{draw(NUMBERS)}")
    if kind == "json":
        items = draw(st.lists(st.one_of(NUMBERS, st.just('"3"'), st.just("null"), st.just("[]")), max_size=8))
        return ("text", '{"activations": [' + ", ".join(f'{{"activation": {v}}}' for v in items) + "]}")
    if kind == "nest":
        depth = draw(st.sampled_from([50, 5000, 100_000]))
        return ("text", draw(st.sampled_from(["[", '{"a":'])) * depth)
    if kind == "junk":
        return ("text", draw(JUNK))
    if kind == "long":
        return ("text", draw(st.sampled_from(["animals ", "1: 0=1 ", "yes "])) * draw(st.sampled_from([500, 30_000])))
    return (kind,)


LOGPROB = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([709.9, 710.0, 800.0, 1e308, -1e308, -745.5, 0.0]),
    st.just(None),
    st.just("x"),
)


@dataclass
class Recipe:
    pieces: list
    finish_reason: object
    cut: float | None  # keep this share of the answer, as a server cutting at max_tokens
    logprobs: str  # "keep" the honest ones, "drop" them, or "perturb" their values
    perturbed: list
    body: str = "json"  # end to end: how the HTTP body itself is spoiled (see spoil_body)


RECIPES = st.builds(
    Recipe,
    pieces=st.lists(piece(), min_size=1, max_size=4),
    finish_reason=st.sampled_from([None, "stop", "stop", "length", "content_filter", "tool_calls", "", 7]),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    logprobs=st.sampled_from(["keep", "drop", "perturb"]),
    perturbed=st.lists(LOGPROB, min_size=1, max_size=8),
    body=st.sampled_from(["json"] * 6 + ["huge_numbers", "deep", "not_json", "wrong_types"]),
)


def spoil_body(body: dict, how: str) -> str:
    """The HTTP body as text, spoiled `how`: numbers too large for a float, JSON nested
    100,000 deep, no JSON at all, or fields of the wrong type."""
    if how == "huge_numbers":
        return re.sub(r"(?<![\w.])-?\d+\.\d+(?:e-?\d+)?", "9" * 400, json.dumps(body))
    if how == "deep":
        return '{"choices": [{"message": {"content": ' + "[" * 100_000 + "]" * 100_000 + "}}]}"
    if how == "not_json":
        return json.dumps(body)[: len(json.dumps(body)) // 2]
    if how == "wrong_types":
        choice = body["choices"][0]
        choice["logprobs"] = {"content": "many", "tokens": 5, "top_logprobs": "x"}
        body["usage"] = {"prompt_tokens": "lots", "completion_tokens": -4}
        body["model"] = {"name": 1}
    return json.dumps(body)


def explainer_good(request: StubRequest) -> dict:
    return chat_body(request, " animals such as foxes.")


HONEST = JudgeResponder()


def honest(request: StubRequest) -> dict:
    system = next((m.get("content", "") for m in request.messages if m.get("role") == "system"), "")
    if request.is_chat and EXPLAINER_MARK in str(system):
        return explainer_good(request)
    return HONEST(request)


def hostile_body(recipe: Recipe, request: StubRequest) -> dict:
    """The answer `recipe` describes to `request`, as the JSON body a server would send."""
    body = honest(request)
    choice = body["choices"][0]
    if request.is_chat:
        good = choice["message"]["content"]
    else:
        good = choice["text"]
    parts = []
    for p in recipe.pieces:
        if p[0] == "good":
            parts.append(good)
        elif p[0] == "echo":
            parts.append(echo_prompt(request))
        elif p[0] == "system":
            parts.append(str((request.messages or [{}])[0].get("content") or request.prompt[:2000]))
        elif p[0] == "question":
            parts.append(request.last_user_message if request.is_chat else request.prompt[-2000:])
        else:
            parts.append(p[1])
    text = "\n".join(parts)
    if recipe.cut is not None:
        text = text[: int(len(text) * recipe.cut)]
    choice["finish_reason"] = recipe.finish_reason
    if request.is_chat:
        choice["message"]["content"] = text
        items = (choice.get("logprobs") or {}).get("content")
        if recipe.logprobs == "drop" or (items is None and recipe.logprobs != "keep"):
            choice["logprobs"] = None
        elif items and recipe.logprobs == "perturb":
            for k, item in enumerate(items):
                value = recipe.perturbed[k % len(recipe.perturbed)]
                item["logprob"] = value
                for alt in item["top_logprobs"]:
                    alt["logprob"] = value
    else:
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        if recipe.cut is not None and tokens:
            keep = int(len(tokens) * recipe.cut)
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                lp[key] = lp[key][:keep]
        if recipe.logprobs == "drop":
            choice["logprobs"] = None
        elif recipe.logprobs == "perturb":
            for k, top in enumerate(lp.get("top_logprobs") or []):
                if top:
                    value = recipe.perturbed[k % len(recipe.perturbed)]
                    for key in top:
                        top[key] = value
    return body


# -- unit level: straight into the readers -----------------------------------------------------


def completion_from_body(body: dict, chat: bool) -> Completion:
    """What llm.backends.openai makes of a body (the same helpers, without HTTP)."""
    choice = body["choices"][0]
    if chat:
        items = (choice.get("logprobs") or {}).get("content")
        logprobs = None
        if isinstance(items, list):
            logprobs = [as_token_logprob(i.get("token"), i.get("logprob"), i.get("top_logprobs")) for i in items]
        text = as_text(choice["message"].get("content"))
    else:
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        values = lp.get("token_logprobs") or []
        tops = lp.get("top_logprobs") or []
        logprobs = [
            as_token_logprob(t, values[i] if i < len(values) else None, tops[i] if i < len(tops) else None)
            for i, t in enumerate(tokens)
        ] or None
        text = as_text(choice.get("text"))
    return Completion(
        text=text, logprobs=logprobs, model=as_model(body.get("model")),
        finish_reason=as_finish_reason(choice.get("finish_reason")),
    )


class FakeBackend:
    """A ChatBackend that answers every call with the recipe's answer to that call."""

    name = "fake"

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def chat(self, messages, *, model, temperature=0.0, max_tokens=None, json_mode=False, top_logprobs=None, deadline=None):
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        if top_logprobs:
            body["logprobs"], body["top_logprobs"] = True, top_logprobs
        request = StubRequest(path=CHAT_PATH, body=body, headers={})
        return completion_from_body(json.loads(json.dumps(hostile_body(self.recipe, request))), chat=True)

    def complete(self, prompt, *, model, max_tokens=0, echo=True, logprobs=5, deadline=None):
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "echo": echo, "logprobs": logprobs}
        request = StubRequest(path=COMPLETIONS_PATH, body=body, headers={})
        return completion_from_body(json.loads(json.dumps(hostile_body(self.recipe, request))), chat=False)


def assert_run_is_values_or_failures(run, texts):
    failed = {f.index for f in run.failures}
    assert failed <= set(range(len(texts)))
    for i, tokens in enumerate(texts):
        simulation = run.simulations[i]
        if i in failed:
            assert simulation is None
            continue
        values = simulation.expected_activations
        assert len(values) == len(tokens) and simulation.tokens == list(tokens)
        assert all(isinstance(v, float) and math.isfinite(v) and 0 <= v <= 10 for v in values)
        for probabilities in simulation.distribution_probabilities:
            assert all(math.isfinite(p) and 0 <= p <= 1 for p in probabilities)
        json.dumps(simulation.distribution_values, allow_nan=False)


SIMULATORS = {
    "batched": BatchedSimulator,
    "compact": CompactSimulator,
    "json": JsonPerTextSimulator,
    "logprob": LogprobEVSimulator,
    "all_at_once": AllAtOnceSimulator,
}
UNIT = settings(
    max_examples=UNIT_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(SIMULATORS))
@UNIT
@given(recipe=RECIPES)
def test_every_simulator_answer_is_values_or_failures(name, recipe):
    simulator = SIMULATORS[name](FakeBackend(recipe), "fuzz-model", concurrency=1)
    try:
        run = simulator.simulate(EXPLANATION, TEXTS)
    except LLMError:
        return  # e.g. no logprobs at all: the format cannot run on this backend (a 502)
    assert_run_is_values_or_failures(run, TEXTS)


@pytest.mark.parametrize("fuzzing", [False, True])
@UNIT
@given(recipe=RECIPES)
def test_every_judge_answer_is_a_verdict_or_a_failure(fuzzing, recipe):
    highlights = [[False, False, False, True], [True, False, False, False], [False, False, True, False, False, False]]
    run = judge(
        FakeBackend(recipe), "fuzz-model", EXPLANATION, TEXTS,
        batch_size=2, concurrency=1, highlights=highlights if fuzzing else None,
    )
    failed = {f.index for f in run.failures}
    for i, answer in enumerate(run.answers):
        assert (answer is None) == (i in failed)
        p = run.probabilities[i]
        assert p is None or (math.isfinite(p) and 0 <= p <= 1)


@UNIT
@given(recipe=RECIPES)
def test_every_explainer_answer_is_a_short_clean_line_or_an_upstream_error(recipe):
    records = [{"tokens": t, "values": v} for t, v in zip(TEXTS, VALUES)]
    try:
        result = explain(records, backend=FakeBackend(recipe), model="fuzz-model", n=2)
    except LLMError:
        return
    for candidate in result.candidates:
        assert 0 < len(candidate) <= 300
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in candidate)
        assert EXPLAINER_MARK not in candidate
        candidate.encode("utf-8")  # no lone surrogate


@UNIT
@given(recipe=RECIPES)
def test_every_proposer_answer_is_hypotheses_or_nothing(recipe):
    messages = [{"role": "system", "content": "Propose hypotheses that will be tested."}, {"role": "user", "content": "texts"}]
    request = StubRequest(path=CHAT_PATH, body={"messages": messages}, headers={})
    completion = completion_from_body(json.loads(json.dumps(hostile_body(recipe, request))), chat=True)
    hypotheses, rejected = read_proposal(completion, messages)
    assert rejected >= 0 and all(isinstance(h, str) and 0 < len(h) <= 300 for h in hypotheses)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for h in hypotheses for ch in h)


# -- end to end: over HTTP from the stub, through the Flask app ----------------------------------


class Served:
    def __init__(self):
        self.recipe: Recipe | None = None

    def __call__(self, request):
        if self.recipe is None:
            return honest(request)
        return StubReply(body=spoil_body(hostile_body(self.recipe, request), self.recipe.body))


@pytest.fixture(scope="module")
def served():
    handler = Served()
    with StubOpenAI(handler) as stub:
        settings_ = Settings(
            cache_path="",
            offline_embeddings=True,
            openai_base_url=stub.base_url,
            openai_api_key="sk-fuzz-key-000111",
            simulator_model="stub-model",
            explainer_model="stub-model",
            llm_max_retries=0,
            request_timeout=20.0,
        )
        yield handler, create_app(settings_, Runtime(settings_)).test_client()


E2E = settings(
    max_examples=E2E_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
ACTIVATIONS = [{"tokens": t, "values": v} for t, v in zip(TEXTS, VALUES)] + [
    {"tokens": ["one", " leopard", " hunted"], "values": [0, 2.8, 0]},
]
ROUTES = {
    **{name: ("/score", {"simulator": name}) for name in SIMULATORS},
    "detection": ("/score", {"scorer": "detection", "judge": "openai", "batch_size": 2}),
    "fuzzing": ("/score", {"scorer": "fuzzing", "judge": "openai", "batch_size": 2}),
    "explain": ("/explain", {"n": 2}),
    "explain_scored": ("/explain", {"n": 2, "score": True, "top_k": 2, "simulator": "batched"}),
    "search": ("/explain", {"strategy": "search", "max_rounds": 1, "hypotheses_per_round": 2, "simulate_best": True}),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@E2E
@given(recipe=RECIPES)
def test_no_backend_answer_is_a_500(served, route, recipe):
    handler, client = served
    path, options = ROUTES[route]
    payload = {"activations": ACTIVATIONS, **options}
    if path == "/score":
        payload["explanation"] = EXPLANATION
    handler.recipe = recipe
    try:
        response = client.post(path, json=payload)
    finally:
        handler.recipe = None
    assert response.status_code in (200, 502), response.get_data(as_text=True)[:500]
    body = strict_json(response)
    assert "sk-fuzz-key" not in response.get_data(as_text=True)
    if response.status_code == 502:
        assert body["code"] == "upstream_error"
        return
    if path == "/explain":
        assert 0 < len(body["explanation"]) <= 300 and "\n" not in body["explanation"]
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in body["explanation"])
        return
    assert body["score"] is None or -1 <= body["score"] <= 1
    failed = {f["index"] for f in body["failures"]}
    assert failed <= set(range(len(ACTIVATIONS))) and len(failed) < len(ACTIVATIONS)
