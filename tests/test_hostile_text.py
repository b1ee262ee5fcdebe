"""Hostile text in requests: a lone surrogate in a token (JSON allows "\\ud800") reaches every
simulator, scorer, the cache and the explainer without a 500; the published schema states what
the server refuses that JSON Schema alone would admit."""
from __future__ import annotations

import json

import pytest

from tests.stub_openai import StubOpenAI, scorer_judges

SURROGATE = "\ud800"
TEXTS = [
    {"tokens": ["the", f" fox{SURROGATE}", " runs"], "values": [0, 2.0, 0]},
    {"tokens": ["a", " quick", f" {SURROGATE}"], "values": [0, 1.5, 0.5]},
    {"tokens": ["wooden", " table", " legs"], "values": [0, 0, 0]},
    {"tokens": ["plain", " words", " here"], "values": [0, 0, 0]},
]


def post(client, path: str, body: dict):
    # json.dumps writes the lone surrogate as the escape "\ud800", as a JSON client would.
    return client.post(path, data=json.dumps(body), content_type="application/json")


def echoed(response) -> list[list[str]]:
    return [s["simulation"]["tokens"] for s in response.get_json()["simulations"] if s["simulation"]]


@pytest.mark.parametrize("simulator", ["batched", "compact", "json", "logprob", "all_at_once"])
def test_a_lone_surrogate_reaches_every_llm_simulator_and_the_cache(make_client, tmp_path, simulator):
    with StubOpenAI() as stub:
        client = make_client(openai_base_url=stub.base_url, cache_path=str(tmp_path / "cache.sqlite3"))
        first = post(client, "/score", {"explanation": "animals", "activations": TEXTS, "simulator": simulator})
        assert first.status_code == 200, first.get_data(as_text=True)[:300]
        calls = stub.calls()
        again = post(client, "/score", {"explanation": "animals", "activations": TEXTS, "simulator": simulator})
        assert again.status_code == 200
        assert stub.calls() == calls  # the surrogate's text has a cache key like any other
        assert again.get_json()["usage"]["cache_hits"] >= 1
        assert first.get_json()["failures"] == []  # the surrogate's texts were sent and simulated
        assert echoed(first) == [t["tokens"] for t in TEXTS]  # and echoed exactly as sent


@pytest.mark.parametrize("scorer", ["detection", "fuzzing", "holistic", "intruder"])
def test_a_lone_surrogate_reaches_every_judge(make_client, tmp_path, scorer):
    with StubOpenAI(scorer_judges()) as stub:
        client = make_client(openai_base_url=stub.base_url, cache_path=str(tmp_path / "cache.sqlite3"))
        response = post(client, "/score", {"explanation": "animals", "activations": TEXTS, "scorer": scorer, "judge": "openai"})
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert stub.calls() >= 1


@pytest.mark.parametrize("scorer", ["simulation", "detection", "fuzzing", "embedding", "holistic", "intruder"])
def test_a_lone_surrogate_offline(client, scorer):
    response = post(client, "/score", {"explanation": "animals", "activations": TEXTS, "scorer": scorer})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def test_a_lone_surrogate_in_explain_is_escaped_in_the_prompt(make_client):
    with StubOpenAI() as stub:
        client = make_client(openai_base_url=stub.base_url)
        dry = post(client, "/explain", {"activations": TEXTS, "style": "original", "dry_run": True})
        assert dry.status_code == 200
        prompt = json.dumps(dry.get_json()["messages"])
        assert "\\\\ud800" in prompt  # written as the visible escape \ud800, not the raw code point
        sent = post(client, "/explain", {"activations": TEXTS})
        assert sent.status_code != 500  # the prompt could be encoded and sent (the stub's answer is its own matter)
        assert stub.calls() >= 1


def test_the_schema_states_what_it_cannot_check(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    for name in ("ScoreRequest", "CompareRequest", "ExplainRequest", "SimilarityRequest"):
        rules = schemas[name]["x-server-rules"]
        assert rules and all(":" in rule for rule in rules)
    assert any(rule.startswith("activating:") for rule in schemas["ExplainRequest"]["x-server-rules"])
    # A whitespace-only reference or explanation: the schema's pattern refuses it, as the server does.
    assert schemas["SimilarityRequest"]["properties"]["references"]["items"]["pattern"] == "\\S"
    blank = client.post("/similarity", json={"explanation": "x", "references": ["   "]})
    assert blank.status_code == 400


@pytest.mark.parametrize("strategy", ["single", "search"])
def test_an_explanation_written_from_a_surrogate_token_can_be_scored(client, strategy):
    texts = [{"tokens": [SURROGATE, "b"], "values": [1, 0]}, {"tokens": ["c", "d"], "values": [0, 1]}]
    written = post(client, "/explain", {"activations": texts, "strategy": strategy})
    assert written.status_code == 200, written.get_data(as_text=True)[:300]
    explanation = written.get_json()["explanation"]
    explanation.encode("utf-8")  # Unicode text: no lone surrogate
    scored = post(client, "/score", {"explanation": explanation, "activations": texts})
    assert scored.status_code == 200, scored.get_data(as_text=True)[:300]
