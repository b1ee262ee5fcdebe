"""The /score contract of API.md, through the Flask test client."""
from __future__ import annotations

import copy
import json
import logging

import pytest

from llm.errors import DeadlineExceeded
from llm.usage import Usage
from runtime import Runtime
from scorer import math
from scorer.simulation import SequenceSimulation
from scorer.simulators.base import SimulationRun, TextFailure
from tests.conftest import NEURONPEDIA_EXAMPLE, make_settings


def strict_json(response) -> dict:
    """Parse a body as RFC 8259 JSON: NaN or Infinity fail the test."""

    def reject(name):
        raise AssertionError(f"non-finite constant {name} in body")

    return json.loads(response.get_data(as_text=True), parse_constant=reject)


def assert_error(response, status: int, code: str, mentions: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = strict_json(response)
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    if mentions:
        assert mentions in body["error"], body["error"]
    return body


class FakeSimulator:
    """Predicts from a function of (text index, tokens); may fail some texts."""

    name = "fake"
    model = "fake-model"

    def __init__(self, predict=None, fail=(), raise_exc=None):
        self.predict = predict or (lambda i, tokens: [float(len(t)) for t in tokens])
        self.fail = set(fail)
        self.raise_exc = raise_exc

    def simulate(self, explanation, texts, *, deadline=None):
        if self.raise_exc:
            raise self.raise_exc
        sims, failures = [], []
        for i, tokens in enumerate(texts):
            if i in self.fail:
                sims.append(None)
                failures.append(TextFailure(i, "wrong number of items"))
            else:
                sims.append(SequenceSimulation(list(tokens), self.predict(i, tokens)))
        return SimulationRun(sims, failures, Usage(llm_calls=len(texts), prompt_tokens=10))


class FakeRuntime(Runtime):
    def __init__(self, simulator, **settings):
        super().__init__(make_settings(**settings))
        self._fake = simulator

    def simulator(self, name=None, model=None):
        return self._fake


def fake_client(make_client, simulator, **settings):
    return make_client(FakeRuntime(simulator, **settings), **settings)


# -- the Neuronpedia example -------------------------------------------------


def test_neuronpedia_example_has_the_documented_shape(client):
    response = client.post("/score", json=NEURONPEDIA_EXAMPLE)
    assert response.status_code == 200
    body = strict_json(response)
    assert body["score"] is None or -1.0 <= body["score"] <= 1.0
    assert len(body["simulations"]) == 2
    for sent, item in zip(NEURONPEDIA_EXAMPLE["activations"], body["simulations"]):
        sim = item["simulation"]
        assert sim["tokens"] == sent["tokens"]
        assert len(sim["expected_activations"]) == len(sent["tokens"])
        assert all(0.0 <= v <= 10.0 for v in sim["expected_activations"])
        assert sim["activation_scale"] == "simulated_normalized_activations"
        assert sim["distribution_values"] == [] and sim["distribution_probabilities"] == []
        assert sim["uncalibrated_simulation"] is None
        assert item["true_activations"] == sent["values"]
        for key in ("ev_correlation_score", "rsquared_score", "absolute_dev_explained_score"):
            assert key in item
    assert body["simulator"]["name"] == "offline" and body["simulator"]["offline"] is True
    assert body["failures"] == []
    assert body["usage"]["llm_calls"] == 0


def test_score_is_the_pooled_correlation_of_what_is_returned(make_client):
    # Predictions that correlate differently per text, so pooled != mean of per-text.
    sim = FakeSimulator(predict=lambda i, toks: [float(i * 5 + k) for k in range(len(toks))])
    client = fake_client(make_client, sim)
    response = client.post("/score", json=NEURONPEDIA_EXAMPLE)
    body = strict_json(response)
    trues = [s["true_activations"] for s in body["simulations"]]
    preds = [s["simulation"]["expected_activations"] for s in body["simulations"]]
    assert body["score"] == pytest.approx(math.pooled_correlation(trues, preds), abs=1e-12)
    per_text = [s["ev_correlation_score"] for s in body["simulations"]]
    assert per_text[0] == pytest.approx(math.pearson(trues[0], preds[0]), abs=1e-12)
    assert body["score"] != pytest.approx(sum(per_text) / 2)
    assert body["simulator"] == {"name": "fake", "model": "fake-model", "offline": False}


def test_tokens_come_back_untouched(client):
    tokens = ["<|endoftext|>", " ", "\n", "\t\t", "é", " 東京", "💡", "...", " •", "$", "\u200b", ""]
    payload = {
        "explanation": "the word \"Tokyo\"",
        "activations": [{"tokens": tokens, "values": [0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0]}],
    }
    body = strict_json(client.post("/score", json=payload))
    assert body["simulations"][0]["simulation"]["tokens"] == tokens


def test_dataclass_name_keys_are_ignored(client):
    payload = copy.deepcopy(NEURONPEDIA_EXAMPLE)
    payload["dataclass_name"] = "Whatever"
    for text in payload["activations"]:
        text["dataclass_name"] = "ActivationRecord"
    assert client.post("/score", json=payload).status_code == 200


def test_constant_inputs_give_null_not_nan(make_client):
    client = fake_client(make_client, FakeSimulator(predict=lambda i, toks: [3.0] * len(toks)))
    payload = {"explanation": "x", "activations": [{"tokens": ["a", "b"], "values": [0, 0]}]}
    response = client.post("/score", json=payload)
    assert response.status_code == 200
    body = strict_json(response)
    assert "NaN" not in response.get_data(as_text=True)
    assert body["score"] is None
    item = body["simulations"][0]
    assert item["ev_correlation_score"] is None
    assert item["rsquared_score"] is None
    assert item["absolute_dev_explained_score"] is None


def test_one_token_text_is_scored_as_null(client):
    payload = {"explanation": "x", "activations": [{"tokens": ["a"], "values": [1.0]}]}
    body = strict_json(client.post("/score", json=payload))
    assert body["score"] is None and body["simulations"][0]["ev_correlation_score"] is None


def test_negative_and_integer_values_are_accepted(client):
    payload = {"explanation": "x", "activations": [{"tokens": ["a", "b", "c"], "values": [-1, 0.5, 2]}]}
    body = strict_json(client.post("/score", json=payload))
    assert body["simulations"][0]["true_activations"] == [-1.0, 0.5, 2.0]


# -- failures of the simulator -------------------------------------------------


def test_partial_failure_scores_the_rest_and_lists_the_failed(make_client):
    client = fake_client(make_client, FakeSimulator(fail={1}))
    response = client.post("/score", json=NEURONPEDIA_EXAMPLE)
    assert response.status_code == 200
    body = strict_json(response)
    assert body["failures"] == [{"index": 1, "reason": "wrong number of items"}]
    assert body["texts_scored"] == 1
    failed = body["simulations"][1]
    assert failed["simulation"] is None and failed["ev_correlation_score"] is None
    assert failed["true_activations"] == NEURONPEDIA_EXAMPLE["activations"][1]["values"]
    first = body["simulations"][0]
    assert body["score"] == pytest.approx(
        math.pearson(first["true_activations"], first["simulation"]["expected_activations"])
    )


def test_every_text_failing_is_a_502_not_a_zero_score(make_client):
    client = fake_client(make_client, FakeSimulator(fail={0, 1}))
    assert_error(client.post("/score", json=NEURONPEDIA_EXAMPLE), 502, "upstream_error", "every text")


def test_simulator_predictions_of_the_wrong_length_are_failures(make_client):
    class Broken(FakeSimulator):
        def simulate(self, explanation, texts, *, deadline=None):
            run = super().simulate(explanation, texts)
            run.simulations[0].expected_activations.append(1.0)  # corrupt after validation
            return run

    body = strict_json(fake_client(make_client, Broken()).post("/score", json=NEURONPEDIA_EXAMPLE))
    assert [f["index"] for f in body["failures"]] == [0]


def test_deadline_is_a_504(make_client):
    client = fake_client(make_client, FakeSimulator(raise_exc=DeadlineExceeded("too slow")))
    assert_error(client.post("/score", json=NEURONPEDIA_EXAMPLE), 504, "upstream_timeout")


def test_llm_simulator_without_a_backend_is_a_503(client):
    from scorer.simulators import LLM_SIMULATORS

    if not LLM_SIMULATORS:
        pytest.skip("no LLM simulator registered")
    payload = {**NEURONPEDIA_EXAMPLE, "simulator": sorted(LLM_SIMULATORS)[0]}
    assert_error(client.post("/score", json=payload), 503, "backend_unavailable", "OPENAI")


# -- authentication ------------------------------------------------------------


@pytest.fixture
def locked(make_client):
    return make_client(server_key="s3cret-key")


def test_open_when_no_key_is_set(client):
    assert client.post("/score", json=NEURONPEDIA_EXAMPLE).status_code == 200


@pytest.mark.parametrize(
    "secret,headers",
    [
        (None, {}),
        ("", {}),
        ("wrong", {}),
        (None, {"X-Secret-Key": "wrong"}),
        (None, {"Authorization": "Bearer wrong"}),
        (None, {"Authorization": "Basic s3cret-key"}),
        ("s3cret-key-and-more", {}),
    ],
)
def test_missing_or_wrong_secret_is_401(locked, secret, headers):
    payload = dict(NEURONPEDIA_EXAMPLE)
    if secret is None:
        payload.pop("secret")
    else:
        payload["secret"] = secret
    body = assert_error(locked.post("/score", json=payload, headers=headers), 401, "unauthorized")
    assert "s3cret-key" not in json.dumps(body)


@pytest.mark.parametrize(
    "secret,headers",
    [
        ("s3cret-key", {}),
        (None, {"X-Secret-Key": "s3cret-key"}),
        (None, {"Authorization": "Bearer s3cret-key"}),
        (None, {"authorization": "bearer s3cret-key"}),
    ],
)
def test_the_right_secret_in_any_documented_place_is_accepted(locked, secret, headers):
    payload = {**NEURONPEDIA_EXAMPLE, "secret": secret} if secret else {
        k: v for k, v in NEURONPEDIA_EXAMPLE.items() if k != "secret"
    }
    response = locked.post("/score", json=payload, headers=headers)
    assert response.status_code == 200
    assert "s3cret-key" not in response.get_data(as_text=True)


def test_the_secret_never_reaches_the_logs(locked, caplog):
    caplog.set_level(logging.DEBUG)
    locked.post("/score", json={**NEURONPEDIA_EXAMPLE, "secret": "s3cret-key"})
    locked.post("/score", json={**NEURONPEDIA_EXAMPLE, "secret": "s3cret-key-wrong"})
    locked.post("/score", json=NEURONPEDIA_EXAMPLE, headers={"Authorization": "Bearer s3cret-key"})
    assert "s3cret-key" not in caplog.text


def test_secret_comparison_is_constant_time(monkeypatch, locked):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    locked.post("/score", json={**NEURONPEDIA_EXAMPLE, "secret": "wrong"})
    assert calls, "the secret must be compared with hmac.compare_digest"


def test_health_needs_no_secret_and_shows_none(make_client):
    client = make_client(server_key="s3cret-key", openai_api_key="sk-live-abc")
    response = client.get("/health")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "s3cret-key" not in text and "sk-live-abc" not in text
    assert strict_json(response)["auth_required"] is True


# -- bad requests ----------------------------------------------------------------


def post_raw(client, data, content_type="application/json"):
    return client.post("/score", data=data, content_type=content_type)


@pytest.mark.parametrize(
    "mutate,mentions",
    [
        (lambda p: p.pop("explanation"), "explanation"),
        (lambda p: p.update(explanation="   "), "explanation"),
        (lambda p: p.update(explanation=7), "explanation"),
        (lambda p: p.update(activations=[]), "activations"),
        (lambda p: p.pop("activations"), "activations"),
        (lambda p: p.update(activations="nope"), "activations"),
        (lambda p: p["activations"][1].update(values=[1, 2]), "activations[1]"),
        (lambda p: p["activations"][0].update(tokens=[], values=[]), "activations[0].tokens"),
        (lambda p: p["activations"][1]["values"].__setitem__(2, "1.5"), "activations[1].values[2]"),
        (lambda p: p["activations"][1]["values"].__setitem__(2, None), "activations[1].values[2]"),
        (lambda p: p["activations"][1]["values"].__setitem__(2, True), "activations[1].values[2]"),
        (lambda p: p["activations"][0]["tokens"].__setitem__(0, 5), "activations[0].tokens[0]"),
        (lambda p: p.update(simulator="gpt-17"), "simulator"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(client, mutate, mentions):
    payload = copy.deepcopy(NEURONPEDIA_EXAMPLE)
    mutate(payload)
    assert_error(client.post("/score", json=payload), 400, "invalid_request", mentions)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400(client, literal):
    raw = json.dumps(NEURONPEDIA_EXAMPLE).replace("2.5]", f"{literal}]", 1)
    assert_error(post_raw(client, raw), 400, "invalid_request")


def test_huge_numbers_are_400(client):
    raw = json.dumps(NEURONPEDIA_EXAMPLE).replace("2.5]", "1e999]", 1)
    assert_error(post_raw(client, raw), 400, "invalid_request", "activations[0].values[3]")


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000],
)
def test_malformed_bodies_are_400(client, data):
    assert_error(post_raw(client, data), 400, "invalid_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, content_type):
    response = client.post("/score", data=json.dumps(NEURONPEDIA_EXAMPLE), content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "application/json")


def test_body_over_the_limit_is_413(make_client):
    client = make_client(max_content_length=1000)
    payload = {"explanation": "x" * 2000, "activations": NEURONPEDIA_EXAMPLE["activations"]}
    assert_error(client.post("/score", json=payload), 413, "payload_too_large", "MAX_CONTENT_LENGTH")


def test_too_many_texts_is_413(make_client):
    client = make_client(max_texts=1)
    assert_error(client.post("/score", json=NEURONPEDIA_EXAMPLE), 413, "payload_too_large", "activations")


def test_too_many_tokens_is_413(make_client):
    client = make_client(max_tokens_per_text=3)
    assert_error(
        client.post("/score", json=NEURONPEDIA_EXAMPLE), 413, "payload_too_large", "activations[0].tokens"
    )


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/nope"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    response = client.get("/score")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_openapi_is_generated_from_the_request_models(client):
    doc = strict_json(client.get("/openapi.json"))
    schema = doc["components"]["schemas"]["ScoreRequest"]
    assert set(schema["required"]) == {"explanation", "activations"}
    assert "/score" in doc["paths"] and "/explain" in doc["paths"]
    assert "ActivationText" in doc["components"]["schemas"]


def test_health_names_the_default_simulator(client):
    body = strict_json(client.get("/health"))
    assert body["status"] == "ok"
    assert body["simulator"]["default"] == "offline" and body["simulator"]["offline"] is True
    assert body["llm_configured"] is False
    assert body["search_caps"] == {"max_rounds": 10, "max_llm_calls": 300, "max_tokens": 500_000}


def test_configuring_an_llm_makes_it_the_default(make_client):
    body = strict_json(make_client(openai_base_url="http://127.0.0.1:9/v1").get("/health"))
    assert body["simulator"]["offline"] is False
    assert body["explainer"]["default_backend"] == "openai"


@pytest.mark.parametrize(
    "secret,headers",
    [
        ("s3cret-key", {"Authorization": "Bearer gateway-token"}),
        ("s3cret-key", {"X-Secret-Key": "wrong"}),
        ("wrong", {"Authorization": "Bearer s3cret-key"}),
        (None, {"X-Secret-Key": "wrong", "Authorization": "Bearer s3cret-key"}),
    ],
)
def test_any_one_place_may_carry_the_key_whatever_the_others_say(locked, secret, headers):
    payload = {**NEURONPEDIA_EXAMPLE, "secret": secret} if secret else NEURONPEDIA_EXAMPLE
    assert locked.post("/score", json=payload, headers=headers).status_code == 200


def test_every_offer_is_compared_whichever_matches(monkeypatch):
    import hmac

    from web import auth

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    offers = auth.offered_secrets({"X-Secret-Key": "k", "Authorization": "Bearer x"}, lambda: {"secret": "y"})
    assert offers == ["k", "x", "y"]
    assert auth.secret_matches(offers, "k") and len(calls) == 3


def test_limits_name_random_activations_when_they_are_the_excess(make_client):
    text = {"tokens": ["a", "b"], "values": [0, 1]}
    long_text = {"tokens": ["a"] * 6, "values": [0] * 6}
    client = make_client(max_tokens_per_text=5, max_texts=3)
    assert_error(
        client.post("/explain", json={"activations": [text], "random_activations": [long_text]}),
        413, "payload_too_large", "random_activations[0].tokens",
    )
    assert_error(
        client.post("/explain", json={"activations": [text, text], "random_activations": [text, text]}),
        413, "payload_too_large", "activations + random_activations: 4 texts",
    )


def test_a_request_id_that_is_the_secret_is_not_echoed(locked):
    response = locked.post("/score", json=NEURONPEDIA_EXAMPLE, headers={"X-Request-ID": "s3cret-key"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] != "s3cret-key"
    assert "s3cret-key" not in str(response.headers)


def test_finite_json_turns_every_non_finite_float_into_null():
    from web.bodies import finite_json

    value = {"a": [float("nan"), 1.5, (float("inf"), {"b": float("-inf")})], "c": "NaN", "d": 3}
    assert json.dumps(finite_json(value), allow_nan=False) == (
        '{"a": [null, 1.5, [null, {"b": null}]], "c": "NaN", "d": 3}'
    )
