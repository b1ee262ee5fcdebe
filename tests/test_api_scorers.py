"""/score with detection, fuzzing and embedding, and /similarity: offline, with the packaged
model, and over real HTTP to the loopback OpenAI-compatible stub."""
from __future__ import annotations

import json

import pytest

from llm.embeddings import unavailable_reason
from tests.conftest import NEURONPEDIA_EXAMPLE
from tests.stub_openai import EMBEDDINGS_PATH, JudgeResponder, StubOpenAI, chat_body
from tests.test_api_score import assert_error, strict_json

API_KEY = "sk-test-upstream-key-5521"
MODEL_MISSING = unavailable_reason()
needs_model = pytest.mark.skipif(bool(MODEL_MISSING), reason=f"the packaged MiniLM model: {MODEL_MISSING}")


def text(words: str, values: dict[int, float] | None = None) -> dict:
    tokens = [(" " if i else "") + w for i, w in enumerate(words.split())]
    vals = [0.0] * len(tokens)
    for i, v in (values or {}).items():
        vals[i] = v
    return {"tokens": tokens, "values": vals}


# Seven texts: four on which the neuron fires (on the animal), three on which it does not.
TEXTS = [
    text("the quick brown fox jumps", {3: 2.5, 1: 0.5}),
    text("a table and two chairs"),
    text("the spotted leopard sprints at dawn", {2: 3.0, 3: 1.0}),
    text("rain fell on the roof", {0: 0.2}),
    text("a fox hid in the hedge", {1: 2.0}),
    text("the kitchen smelled of bread"),
    text("one leopard hunted alone", {1: 2.8}),
]
ANIMALS = {"explanation": "fox and leopard", "activations": TEXTS}
ACTIVATING = [True, False, True, False, True, False, True]


@pytest.fixture
def stub():
    with StubOpenAI(JudgeResponder()) as server:
        yield server


@pytest.fixture
def llm_client(make_client, stub, tmp_path):
    def make(**overrides):
        options = dict(
            openai_base_url=stub.base_url,
            openai_api_key=API_KEY,
            simulator_model="stub-model",
            llm_max_retries=0,
            request_timeout=10.0,
            cache_path=str(tmp_path / "cache.sqlite3"),
        )
        options.update(overrides)
        return make_client(**options)

    return make


def judge_calls(stub) -> int:
    return sum(1 for r in stub.requests if JudgeResponder.is_judge_prompt(r))


# -- offline: no key, no network ----------------------------------------------------------


@pytest.mark.parametrize("scorer", ["detection", "fuzzing", "embedding"])
def test_every_scorer_runs_offline_with_the_neuronpedia_shape(client, scorer):
    if scorer == "embedding" and MODEL_MISSING:
        pytest.skip(MODEL_MISSING)
    response = client.post("/score", json={**ANIMALS, "scorer": scorer})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    assert body["scorer"] == scorer and body["simulations"] == []
    assert body["metric"] == ("auc" if scorer == "embedding" else "balanced_accuracy")
    assert body["offline"] is True and body["judge"]["offline"] is True
    assert body["usage"]["llm_calls"] == 0 and body["failures"] == []
    assert [t["index"] for t in body["texts"]] == list(range(len(TEXTS)))
    assert [t["label"] == "activating" for t in body["texts"]] == ACTIVATING
    assert 0.0 <= body["score"] <= 1.0
    # The explanation names the animals: every offline scorer ranks it well.
    assert body["score"] >= 0.75, body


def test_offline_detection_per_text_breakdown(client):
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection"}))
    assert body["judge"]["name"] == "offline"
    for entry, activating in zip(body["texts"], ACTIVATING):
        assert entry["answer"] in (True, False) and entry["correct"] == (entry["answer"] == activating)
    assert body["details"]["activation_threshold"] == 0.3
    assert body["details"]["activating_texts"] == 4 and body["texts_scored"] == 7
    wrong = strict_json(client.post("/score", json={**ANIMALS, "explanation": "kitchen", "scorer": "detection"}))
    assert wrong["score"] < body["score"]


def test_fuzzing_marks_correct_and_random_halves_deterministically(client):
    first = strict_json(client.post("/score", json={**ANIMALS, "scorer": "fuzzing"}))
    again = strict_json(client.post("/score", json={**ANIMALS, "scorer": "fuzzing", "explanation": "kitchen"}))
    kinds = [t["marking"] for t in first["texts"]]
    assert kinds.count("correct") == 2 and kinds.count("random") == 2 and kinds.count(None) == 3
    # The marks depend on the texts and the seed, never on the explanation.
    assert [t["marked"] for t in first["texts"]] == [t["marked"] for t in again["texts"]]
    reseeded = strict_json(client.post("/score", json={**ANIMALS, "scorer": "fuzzing", "seed": 5}))
    assert reseeded["details"]["seed"] == 5


def test_simulation_stays_the_default_and_unchanged(client):
    default = strict_json(client.post("/score", json=NEURONPEDIA_EXAMPLE))
    named = strict_json(client.post("/score", json={**NEURONPEDIA_EXAMPLE, "scorer": "simulation"}))
    assert default["scorer"] == "simulation" and default["metric"] == "pearson"
    assert len(default["simulations"]) == 2 and "texts" not in default
    default.pop("elapsed_ms"), named.pop("elapsed_ms")
    assert default == named


# -- the two-class rule and option validation --------------------------------------------------


@pytest.mark.parametrize("scorer", ["detection", "embedding"])
def test_one_class_only_is_a_400_that_says_what_to_send(client, scorer):
    only_active = [t for t, a in zip(TEXTS, ACTIVATING) if a]
    response = client.post("/score", json={**ANIMALS, "activations": only_active, "scorer": scorer})
    body = assert_error(response, 400, "invalid_request", f"{scorer} needs both activating and non-activating texts")
    assert "add texts whose max activation is below 0.9" in body["error"]  # 0.3 x 3.0


def test_all_zero_activations_are_a_400(client):
    flat = [text("a b c"), text("d e f")]
    response = client.post("/score", json={**ANIMALS, "activations": flat, "scorer": "detection"})
    assert_error(response, 400, "invalid_request", "no value is above 0")


def test_fuzzing_with_one_activating_text_is_a_400(client):
    response = client.post("/score", json={**ANIMALS, "activations": TEXTS[:2], "scorer": "fuzzing"})
    assert_error(response, 400, "invalid_request", "at least 2 activating texts")


def test_the_threshold_decides_the_classes(client):
    # At 0.9 of the max (3.0) only the texts reaching 2.7 activate: 2 and 6.
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection", "activation_threshold": 0.9}))
    assert [t["label"] == "activating" for t in body["texts"]] == [False, False, True, False, False, False, True]


@pytest.mark.parametrize(
    "option, value, field",
    [
        ("scorer", "rouge", "scorer"),
        ("activation_threshold", 0, "activation_threshold"),
        ("activation_threshold", 1.5, "activation_threshold"),
        ("activation_threshold", "0.3", "activation_threshold"),
        ("batch_size", 0, "batch_size"),
        ("random_fraction", 1.0, "random_fraction"),
        ("judge", "gpt", "judge"),
        ("seed", -1, "seed"),
    ],
)
def test_bad_scorer_options_are_a_400_naming_the_field(client, option, value, field):
    response = client.post("/score", json={**ANIMALS, "scorer": "detection", option: value})
    assert_error(response, 400, "invalid_request", field)


def test_asking_for_the_llm_judge_without_an_llm_is_a_503(client):
    response = client.post("/score", json={**ANIMALS, "scorer": "detection", "judge": "openai"})
    assert_error(response, 503, "backend_unavailable")


# -- the LLM judge over HTTP -------------------------------------------------------------------


def test_detection_with_the_llm_fits_the_texts_in_the_token_budget(llm_client, stub):
    response = llm_client().post("/score", json={**ANIMALS, "scorer": "detection"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    assert judge_calls(stub) == 1  # 7 short texts: one prompt within SIMULATOR_BATCH_TOKENS
    assert body["judge"] == {"name": "openai", "model": "stub-model", "offline": False}
    assert body["offline"] is False and body["score"] == 1.0
    assert [t["answer"] for t in body["texts"]] == ACTIVATING
    assert all(t["probability"] == pytest.approx(0.9 if a else 0.1) for t, a in zip(body["texts"], ACTIVATING))
    assert body["details"]["auc"] == 1.0 and body["details"]["balanced_accuracy"] == body["score"]
    assert body["usage"]["llm_calls"] == 1 and body["usage"]["prompt_tokens"] > 0
    assert API_KEY not in response.get_data(as_text=True)


def test_fuzzing_reads_p_yes_and_its_auc_from_logprobs(llm_client, stub):
    body = strict_json(llm_client().post("/score", json={**ANIMALS, "scorer": "fuzzing"}))
    judged = [t for t in body["texts"] if t["marking"] is not None]
    assert all(t["probability"] == pytest.approx(0.9 if t["answer"] else 0.1) for t in judged)
    assert body["details"]["auc"] == 1.0 and body["details"]["balanced_accuracy"] == 1.0
    for entry in body["quantiles"]:
        inside = [t["probability"] for t in judged if entry["low"] <= t["max_activation"] < entry["high"] or (
            entry["bin"] == 4 and t["max_activation"] == entry["high"])]
        assert entry["texts"] == len(inside)
        assert entry["mean_probability"] == (pytest.approx(sum(inside) / len(inside)) if inside else None)


@pytest.mark.parametrize("scorer", ["detection", "fuzzing"])
def test_without_logprobs_there_is_no_auc_and_no_probability(make_client, scorer):
    responder = JudgeResponder()

    def no_logprobs(request):  # a server that ignores the request for logprobs
        request.body.pop("logprobs", None)
        return responder(request)

    with StubOpenAI(no_logprobs) as server:
        client = make_client(openai_base_url=server.base_url, request_timeout=10.0, llm_max_retries=0)
        body = strict_json(client.post("/score", json={**ANIMALS, "scorer": scorer}))
    assert body["score"] == 1.0 and body["details"]["auc"] is None
    assert all(t["probability"] is None for t in body["texts"])


def test_batch_size_is_a_request_option(llm_client, stub):
    strict_json(llm_client(cache_path="").post("/score", json={**ANIMALS, "scorer": "detection", "batch_size": 3}))
    assert judge_calls(stub) == 3


def test_a_repeated_detection_is_served_from_the_cache(llm_client, stub):
    client = llm_client()
    first = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection"}))
    calls = stub.calls()
    second = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection"}))
    assert stub.calls() == calls and second["usage"]["cache_hits"] == 7
    assert second["score"] == first["score"]


def test_fuzzing_with_the_llm_shows_marks_and_scores_them(llm_client, stub):
    body = strict_json(llm_client().post("/score", json={**ANIMALS, "scorer": "fuzzing"}))
    questions = [r.last_user_message for r in stub.requests if JudgeResponder.is_judge_prompt(r)]
    assert len(questions) == 1 and questions[0].count("<<") == 4  # 4 activating texts, one run each
    assert body["score"] == 1.0 and body["metric"] == "balanced_accuracy"
    assert {t["marking"] for t in body["texts"]} == {"correct", "random", None}


def test_malformed_answers_are_excluded_and_listed(make_client):
    responder = JudgeResponder()

    def handler(request):
        verdicts = responder.verdicts(request)
        # The text about the roof (request index 3) never gets a usable answer.
        lines = [
            f"{n}: {'perhaps' if 'roof' in line else ('yes' if yes else 'no')}"
            for (n, yes), line in zip(verdicts, request.last_user_message.split("\n")[: len(verdicts)])
        ]
        return chat_body(request, "\n".join(lines))

    with StubOpenAI(handler) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=10.0, llm_max_retries=0)
        body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "detection"}))
        assert stub.calls() == 2  # one batch, then the failed text once more
    assert [f["index"] for f in body["failures"]] == [3]
    assert "unusable answer after 2 attempts" in body["failures"][0]["reason"]
    assert body["texts"][3]["answer"] is None and body["texts"][3]["correct"] is None
    assert body["texts_scored"] == 6 and body["score"] == 1.0


def test_a_judge_that_never_answers_usably_is_a_502(make_client):
    with StubOpenAI(lambda request: chat_body(request, "I cannot help with that.")) as bad:
        client = make_client(openai_base_url=bad.base_url, openai_api_key=API_KEY, request_timeout=10.0)
        response = client.post("/score", json={**ANIMALS, "scorer": "detection"})
        body = assert_error(response, 502, "upstream_error", "every text")
        assert bad.calls() == 2  # one batch, asked twice, never more
        assert API_KEY not in json.dumps(body)


def test_the_offline_judge_can_be_asked_for_with_an_llm_configured(llm_client, stub):
    body = strict_json(llm_client().post("/score", json={**ANIMALS, "scorer": "detection", "judge": "offline"}))
    assert body["offline"] is True and body["judge"]["name"] == "offline"
    assert stub.calls() == 0


# -- embeddings: the packaged model, and an embeddings endpoint ----------------------------------


@needs_model
def test_embedding_scores_with_the_packaged_model(client):
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "embedding"}))
    assert body["judge"] == {"name": "local", "model": "minilm-l6-int8", "offline": True}
    sims = [t["similarity"] for t in body["texts"]]
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert body["score"] == 1.0  # every animal text is closer to "fox and leopard"
    unrelated = strict_json(
        client.post("/score", json={**ANIMALS, "scorer": "embedding", "explanation": "furniture in a kitchen"})
    )
    assert unrelated["score"] < 0.5


def test_embedding_through_an_embeddings_endpoint(make_client):
    with StubOpenAI(JudgeResponder()) as stub:
        client = make_client(
            openai_base_url=stub.base_url, embedding_backend="openai", embedding_model="stub-embed", request_timeout=10.0
        )
        body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "embedding"}))
        calls = [r for r in stub.requests if r.path == EMBEDDINGS_PATH]
        assert len(calls) == 1 and calls[0].body["model"] == "stub-embed"
        assert calls[0].body["input"][0] == "fox and leopard" and len(calls[0].body["input"]) == 8
    assert body["judge"] == {"name": "openai", "model": "stub-embed", "offline": False}
    assert body["offline"] is False and body["usage"]["llm_calls"] == 1 and body["usage"]["prompt_tokens"] > 0
    assert body["score"] == 1.0  # the stub's bag of words shares "fox"/"leopard" with the texts


@needs_model
def test_the_local_model_serves_embeddings_even_with_a_lexical_simulator(make_client):
    client = make_client(offline_embeddings=False)
    body = strict_json(client.post("/score", json={**ANIMALS, "scorer": "embedding"}))
    assert body["judge"]["name"] == "local" and body["score"] == 1.0
    simulation = strict_json(client.post("/score", json=ANIMALS))
    assert simulation["simulator"]["model"] == "lexical"


def test_embedding_without_a_local_model_is_a_503(make_client, tmp_path):
    from llm.embeddings import LocalEmbedder
    from runtime import Runtime
    from runtime.settings import Settings

    settings = Settings(cache_path="")
    broken = LocalEmbedder(model_path=tmp_path / "missing.onnx")
    client = make_client(runtime=Runtime(settings, embedder=broken))
    assert_error(client.post("/score", json={**ANIMALS, "scorer": "embedding"}), 503, "backend_unavailable")
    assert_error(
        client.post("/similarity", json={"explanation": "a", "references": ["b"]}), 503, "backend_unavailable"
    )


# -- /similarity ------------------------------------------------------------------------------


@needs_model
def test_similarity_with_the_packaged_model(client):
    response = client.post(
        "/similarity",
        json={"explanation": "fast animals", "references": ["fast animals", "quick animals", "kitchen tools"]},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = strict_json(response)
    same, close, far = body["similarities"]
    assert same == pytest.approx(1.0, abs=1e-5) and close > far
    assert body["mean"] == pytest.approx((same + close + far) / 3)
    assert body["metric"] == "cosine" and body["offline"] is True
    assert body["embedder"] == {"name": "local", "model": "minilm-l6-int8", "offline": True}


def test_similarity_through_an_embeddings_endpoint(make_client):
    with StubOpenAI() as stub:
        client = make_client(openai_base_url=stub.base_url, embedding_backend="openai", request_timeout=10.0)
        body = strict_json(
            client.post("/similarity", json={"explanation": "fox", "references": ["the fox", "a table"], "model": "m2"})
        )
        assert stub.requests[-1].body["model"] == "m2"
    assert body["similarities"] == [pytest.approx(1.0), pytest.approx(0.0)]
    assert body["offline"] is False and body["usage"]["llm_calls"] == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"references": ["a"]}, "explanation"),
        ({"explanation": "a"}, "references"),
        ({"explanation": "a", "references": []}, "references"),
        ({"explanation": "a", "references": ["  "]}, "references[0]"),
        ({"explanation": "a", "references": [3]}, "references[0]"),
    ],
)
def test_similarity_validates_its_body(client, payload, field):
    assert_error(client.post("/similarity", json=payload), 400, "invalid_request", field)


def test_similarity_limits_and_auth(make_client):
    client = make_client(max_texts=2, server_key="s3cret-key")
    payload = {"explanation": "a", "references": ["b", "c", "d"]}
    assert_error(client.post("/similarity", json=payload), 401, "unauthorized")
    headers = {"X-Secret-Key": "s3cret-key"}
    assert_error(client.post("/similarity", json=payload, headers=headers), 413, "payload_too_large", "references")
    long = {"explanation": "a", "references": ["b" * 3000]}
    assert_error(client.post("/similarity", json=long, headers=headers), 413, "payload_too_large", "references[0]")
    assert_error(client.post("/similarity", data="x", headers=headers), 415, "unsupported_media_type")


def test_health_and_openapi_list_the_scorers(client):
    health = strict_json(client.get("/health"))
    names = ["simulation", "detection", "fuzzing", "embedding", "holistic", "intruder"]
    assert health["scorers"]["available"] == names
    assert health["scorers"]["default_judge"] == "offline" and health["scorers"]["embedding_backend"] == "local"
    doc = strict_json(client.get("/openapi.json"))
    assert "/similarity" in doc["paths"]
    score = doc["components"]["schemas"]["ScoreRequest"]["properties"]
    assert score["scorer"]["enum"] == names
    assert score["top_k"]["maximum"] == 50 and score["rounds"]["minimum"] == 1
    assert score["activating_per_round"]["minimum"] == 2
    assert "SimilarityRequest" in doc["components"]["schemas"]


def test_a_wrong_embeddings_answer_is_a_502(make_client):
    from tests.stub_openai import StubReply, embeddings_body, error_body

    def short(request):
        return embeddings_body(request, vectors=[[1.0, 0.0]])  # one vector for every input

    with StubOpenAI(short) as stub:
        client = make_client(openai_base_url=stub.base_url, embedding_backend="openai", llm_max_retries=0)
        payload = {"explanation": "fox", "references": ["a", "b"]}
        assert_error(client.post("/similarity", json=payload), 502, "upstream_error", "1 embeddings for 3 texts")
    with StubOpenAI(lambda r: StubReply(404, error_body("no such model", "invalid_request_error"))) as stub:
        client = make_client(openai_base_url=stub.base_url, embedding_backend="openai", llm_max_retries=0)
        assert_error(client.post("/score", json={**ANIMALS, "scorer": "embedding"}), 502, "upstream_error", "404")


def test_a_slow_judge_is_a_504_within_the_deadline(make_client):
    import time

    with StubOpenAI(JudgeResponder(), delay=3.0) as slow:
        client = make_client(openai_base_url=slow.base_url, request_timeout=0.8, llm_max_retries=0)
        started = time.monotonic()
        response = client.post("/score", json={**ANIMALS, "scorer": "detection"})
        assert_error(response, 504, "upstream_timeout")
        assert time.monotonic() - started < 2.5
