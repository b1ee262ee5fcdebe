"""/score and /explain end to end over real HTTP to the loopback OpenAI-compatible stub."""
from __future__ import annotations

import itertools
import json
import time

import pytest

from tests.conftest import NEURONPEDIA_EXAMPLE
from tests.stub_openai import SimulationResponder, StubOpenAI, StubReply, chat_body, error_body, refused_url
from tests.test_api_score import assert_error, strict_json

API_KEY = "sk-test-upstream-key-7781"


class ExplainAndSimulate:
    """Answers explainer prompts with scripted explanations, simulation prompts with the keyword oracle."""

    def __init__(self, explanations=("animals such as foxes",)):
        self.explanations = itertools.cycle(explanations)
        self.simulate = SimulationResponder()

    def __call__(self, request):
        system = next((m["content"] for m in request.messages if m.get("role") == "system"), "")
        if request.is_chat and "units of a language model" in system:
            return chat_body(request, f" {next(self.explanations)}.")
        return self.simulate(request)


@pytest.fixture
def stub():
    with StubOpenAI(ExplainAndSimulate()) as server:
        yield server


@pytest.fixture
def llm_client(make_client, stub, tmp_path):
    def make(**overrides):
        options = dict(
            openai_base_url=stub.base_url,
            openai_api_key=API_KEY,
            simulator_model="stub-model",
            explainer_model="stub-model",
            llm_max_retries=1,
            request_timeout=10.0,
            cache_path=str(tmp_path / "cache.sqlite3"),
        )
        options.update(overrides)
        return make_client(**options)

    return make


ANIMALS = {
    "explanation": "fox and leopard",
    "activations": NEURONPEDIA_EXAMPLE["activations"],
}


@pytest.mark.parametrize("simulator", ["batched", "compact", "json", "logprob", "all_at_once"])
def test_every_llm_simulator_scores_over_http(llm_client, stub, simulator):
    response = llm_client().post("/score", json={**ANIMALS, "simulator": simulator})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    assert body["simulator"] == {"name": simulator, "model": "stub-model", "offline": False}
    assert body["usage"]["llm_calls"] >= 1 and body["usage"]["prompt_tokens"] > 0
    assert body["failures"] == []
    sims = [s["simulation"] for s in body["simulations"]]
    assert [s["tokens"] for s in sims] == [t["tokens"] for t in ANIMALS["activations"]]
    # The keyword oracle lights " fox" and " leopard" only.
    assert sims[0]["expected_activations"][3] > sims[0]["expected_activations"][0]
    assert sims[1]["expected_activations"][1] > sims[1]["expected_activations"][3]
    if simulator in ("logprob", "all_at_once"):
        assert all(len(v) > 0 for v in sims[0]["distribution_values"])
    assert body["score"] is not None and body["score"] > 0.5
    assert API_KEY not in response.get_data(as_text=True)


def test_the_llm_is_the_default_when_configured_and_batched_is_cheapest(llm_client):
    client = llm_client(cache_path="")
    default = strict_json(client.post("/score", json=ANIMALS))
    per_text = strict_json(client.post("/score", json={**ANIMALS, "simulator": "json"}))
    assert default["simulator"]["name"] == "batched"
    assert default["usage"]["llm_calls"] == 1 and per_text["usage"]["llm_calls"] == 2
    assert default["usage"]["total_tokens"] < per_text["usage"]["total_tokens"]


def test_a_repeated_score_is_served_from_the_cache(llm_client, stub):
    client = llm_client()
    first = strict_json(client.post("/score", json=ANIMALS))
    calls = stub.calls()
    second = strict_json(client.post("/score", json=ANIMALS))
    assert stub.calls() == calls
    assert second["usage"]["llm_calls"] == 0 and second["usage"]["cache_hits"] == 2
    assert second["score"] == first["score"]


def test_malformed_answers_for_every_text_are_a_502(make_client, tmp_path):
    with StubOpenAI(lambda request: chat_body(request, "I cannot help with that.")) as bad:
        client = make_client(openai_base_url=bad.base_url, openai_api_key=API_KEY, request_timeout=10.0)
        response = client.post("/score", json={**ANIMALS, "simulator": "json"})
        body = assert_error(response, 502, "upstream_error", "every text")
        assert bad.calls() == 4  # two texts, each tried twice, never more
        assert API_KEY not in json.dumps(body)


def test_one_failing_text_is_listed_and_the_rest_scored(make_client):
    good = SimulationResponder()

    def handler(request):
        if "sprints" in request.last_user_message:
            return chat_body(request, '{"activations": [{"token": "x", "activation": 3}]}')
        return good(request)

    with StubOpenAI(handler) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=10.0)
        response = client.post("/score", json={**ANIMALS, "simulator": "json"})
        assert response.status_code == 200
        body = strict_json(response)
        assert [f["index"] for f in body["failures"]] == [1]
        assert body["simulations"][1]["simulation"] is None
        assert body["simulations"][0]["simulation"] is not None
        assert body["texts_scored"] == 1


def test_a_bad_key_is_a_502_without_retrying_for_long(make_client):
    def handler(request):
        return StubReply(status=401, body=error_body("Incorrect API key provided", "invalid_api_key"))

    with StubOpenAI(handler) as stub:
        client = make_client(openai_base_url=stub.base_url, openai_api_key=API_KEY, llm_max_retries=3)
        started = time.monotonic()
        response = client.post("/score", json=ANIMALS)
        assert time.monotonic() - started < 5
        body = assert_error(response, 502, "upstream_error")
        assert "401" in body["error"] and API_KEY not in body["error"]


def test_a_refused_connection_is_a_503(make_client):
    client = make_client(openai_base_url=refused_url(), llm_max_retries=1, llm_connect_timeout=1.0)
    started = time.monotonic()
    assert_error(client.post("/score", json=ANIMALS), 503, "backend_unavailable")
    assert time.monotonic() - started < 10


def test_a_slow_backend_is_a_504_within_the_deadline(make_client):
    with StubOpenAI(ExplainAndSimulate(), delay=3.0) as slow:
        client = make_client(openai_base_url=slow.base_url, request_timeout=0.8, llm_max_retries=0)
        started = time.monotonic()
        assert_error(client.post("/score", json=ANIMALS), 504, "upstream_timeout")
        assert time.monotonic() - started < 2.9  # the stub alone would take 3 s


def test_429_with_retry_after_is_honoured_then_succeeds(make_client):
    with StubOpenAI(ExplainAndSimulate()) as stub:
        stub.enqueue(StubReply(status=429, body=error_body("slow down", "rate_limit"), headers={"Retry-After": "1"}))
        client = make_client(openai_base_url=stub.base_url, request_timeout=10.0, cache_path="")
        started = time.monotonic()
        response = client.post("/score", json=ANIMALS)
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.9
        assert stub.calls() == 2


def test_explain_with_an_llm_returns_a_clean_explanation(llm_client, stub):
    response = llm_client().post("/explain", json={"activations": ANIMALS["activations"], "style": "avhs"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    assert body["explanation"] == "animals such as foxes"
    assert body["backend"] == "openai" and body["model"] == "stub-model" and body["offline"] is False
    assert body["usage"]["llm_calls"] == 1 and body["prompt_tokens"] > 0
    assert "messages" not in body


def test_explain_dry_run_calls_nothing(llm_client, stub):
    body = strict_json(
        llm_client().post("/explain", json={"activations": ANIMALS["activations"], "dry_run": True})
    )
    assert stub.calls() == 0
    assert body["messages"][-1]["role"] == "user" and body["prompt_tokens"] > 0
    assert body["explanation"] is None


def test_best_of_n_ranks_candidates_by_their_held_out_score(make_client):
    explanations = ("the word table", "fox and leopard", "quick")
    with StubOpenAI(ExplainAndSimulate(explanations)) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=20.0)
        texts = ANIMALS["activations"] + [
            {"tokens": [" a", " fox", " ran"], "values": [0, 3, 0]},
            {"tokens": [" the", " leopard", " slept"], "values": [0, 2.5, 0]},
        ]
        body = strict_json(
            client.post("/explain", json={"activations": texts, "n": 3, "score": True, "top_k": 2})
        )
        ranked = body["candidates"]
        assert [c["explanation"] for c in ranked][0] == "fox and leopard"
        assert body["explanation"] == "fox and leopard"
        scores = [c["score"] for c in ranked if c["score"] is not None]
        assert scores == sorted(scores, reverse=True)
        assert body["scoring"]["heldout_texts"] == 2
        assert body["scoring"]["simulator"]["name"] == "batched"


def test_explain_without_a_configured_llm_asking_for_openai_is_a_503(client):
    response = client.post("/explain", json={"activations": ANIMALS["activations"], "explainer": "openai"})
    assert_error(response, 503, "backend_unavailable")


def test_an_upstream_message_quoting_the_key_does_not_carry_it_to_the_client(make_client):
    def handler(request):
        return StubReply(status=400, body=error_body(f"bad request from key {API_KEY}", "invalid_request_error"))

    with StubOpenAI(handler) as stub:
        client = make_client(openai_base_url=stub.base_url, openai_api_key=API_KEY)
        response = client.post("/score", json=ANIMALS)
        assert response.status_code == 502
        assert API_KEY not in response.get_data(as_text=True)


def test_configured_prices_give_an_estimated_cost(llm_client):
    client = llm_client(cache_path="", model_prices="stub-model=1.0/2.0")
    body = strict_json(client.post("/score", json=ANIMALS))
    usage = body["usage"]
    expected = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert usage["estimated_cost_usd"] == pytest.approx(expected)
    unpriced = strict_json(llm_client(cache_path="").post("/score", json=ANIMALS))
    assert unpriced["usage"]["estimated_cost_usd"] is None


def test_a_cached_score_has_no_paid_call_to_price(llm_client):
    client = llm_client(model_prices="stub-model=1.0/2.0")
    client.post("/score", json=ANIMALS)
    again = strict_json(client.post("/score", json=ANIMALS))
    assert again["usage"]["llm_calls"] == 0 and again["usage"]["estimated_cost_usd"] is None


def test_bad_prices_are_a_configuration_error():
    from runtime.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="MODEL_PRICES"):
        Settings(model_prices="gpt-4o=cheap")


def test_the_servers_prompt_budget_caps_the_explainer_prompt(make_client):
    long_text = {"tokens": [f" w{i}" for i in range(400)], "values": [float(i % 7) for i in range(400)]}
    client = make_client(explainer_max_prompt_tokens=1500)
    body = strict_json(
        client.post("/explain", json={"activations": [long_text] * 3, "style": "original", "dry_run": True,
                                      "max_prompt_tokens": 100000})
    )
    assert body["prompt_tokens"] <= 1500
    unbounded = strict_json(
        make_client().post("/explain", json={"activations": [long_text] * 3, "style": "original", "dry_run": True})
    )
    assert unbounded["prompt_tokens"] > 1500


def test_explain_usage_reaches_the_request_log(llm_client, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="neuron_interp.access")
    llm_client().post("/explain", json={"activations": ANIMALS["activations"]})
    record = next(r for r in caplog.records if r.name == "neuron_interp.access")
    assert record.fields["strategy"] == "single" and record.fields["model"] == "stub-model"
    assert record.fields["llm_calls"] == 1 and record.fields["prompt_tokens"] > 0


def test_best_of_n_may_score_with_another_simulator_than_the_default(make_client):
    with StubOpenAI(ExplainAndSimulate(("fox", "table"))) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=20.0)
        texts = ANIMALS["activations"] + [{"tokens": [" a", " fox", " ran"], "values": [0, 3, 0]}]
        body = strict_json(
            client.post(
                "/explain",
                json={"activations": texts, "n": 2, "score": True, "top_k": 2, "simulator": "offline"},
            )
        )
        assert body["scoring"]["simulator"]["name"] == "offline"
        assert body["scoring"]["usage"]["llm_calls"] == 0
        assert body["explanation"] == "fox"
