"""POST /explain with strategy "search", end to end: over real HTTP to the loopback stub
(scripted proposals, a planted judge rule), and offline with no LLM configured."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.search_responder import SearchResponder, mentions_rule, numbered
from tests.stub_openai import StubOpenAI, StubReply, error_body
from tests.test_api_score import assert_error, strict_json

API_KEY = "sk-test-search-key-5521"
PLANTED = "zebra"


def text(sentence: str, hot: float = 0.0) -> dict:
    words = sentence.split()
    tokens = [(" " if i else "") + w for i, w in enumerate(words)]
    return {"tokens": tokens, "values": [hot if w.lower().strip(".") == PLANTED else 0.0 for w in words]}


# The neuron fires on "zebra" and nowhere else; the other texts share words with the top ones.
TEXTS = [
    text("The zebra ran across the dry plain", 8.0),
    text("A striped zebra drank from the river", 9.0),
    text("We saw a zebra near the fence", 7.0),
    text("Lions hunted the young zebra at dawn", 10.0),
    text("The zebra herd moved north", 6.0),
    text("A horse ran across the dry plain"),
    text("The striped shirt hung on the fence"),
    text("Lions slept under the tree at noon"),
    text("The river was cold at dawn"),
    text("Our horse drank from the river"),
    text("The cat watched the birds"),
    text("Stock prices fell sharply today"),
]
MAXIMA = [max(t["values"]) for t in TEXTS]
SENTENCES = ["".join(t["tokens"]) for t in TEXTS]

ROUNDS = [
    numbered("the text mentions a horse", "lions are present", "something striped"),
    numbered("the text mentions a zebra", "the text mentions a river"),
    numbered("animals drinking water"),
    numbered("birds"),
]


@pytest.fixture
def search_client(make_client):
    """(client, stub, responder) for a stub answering with `proposals` and `rule`."""
    stubs = []

    def make(proposals=ROUNDS, rule=mentions_rule, **overrides):
        responder = SearchResponder(proposals, rule)
        stub = StubOpenAI(responder).start()
        stubs.append(stub)
        options = dict(
            openai_base_url=stub.base_url,
            openai_api_key=API_KEY,
            simulator_model="stub-model",
            explainer_model="stub-model",
            llm_max_retries=1,
            request_timeout=20.0,
            cache_path="",
        )
        options.update(overrides)
        return make_client(**options), stub, responder

    yield make
    for stub in stubs:
        stub.stop()


def search(client, **options):
    response = client.post("/explain", json={"activations": TEXTS, "strategy": "search", **options})
    assert response.status_code == 200, response.get_data(as_text=True)
    return strict_json(response)


def held_out_texts(body) -> list[int]:
    """The texts a response's statistics are on: the held-out top texts, then the random ones
    (numbered after the top texts)."""
    splits = body["splits"]
    return splits["test"] + [len(TEXTS) + j for j in splits["random_test"]]


def expected_r(hypothesis: str, skip=(), among=None) -> float:
    """The correlation of the planted rule's answers with the texts' maxima, by numpy, over
    the texts `among` (default: all) but `skip`."""
    keep = [i for i in (range(len(TEXTS)) if among is None else among) if i not in skip]
    answers = [float(bool(mentions_rule(hypothesis, SENTENCES[i]))) for i in keep]
    return float(np.corrcoef(answers, [MAXIMA[i] for i in keep])[0, 1])


def by_hypothesis(body) -> dict:
    return {h["hypothesis"]: h for h in body["hypotheses"]}


def test_the_search_finds_the_planted_hypothesis(search_client):
    client, stub, responder = search_client()
    body = search(client, max_rounds=6, patience=2)
    assert body["strategy"] == "search" and body["offline"] is False
    assert body["explanation"] == "the text mentions a zebra"
    test = held_out_texts(body)
    assert body["held_out"] is True and len(test) == 6
    best = body["hypotheses"][0]
    # A 0/1 answer against graded maxima: the point-biserial correlation, below 1 even when
    # exact; on the held-out texts only.
    assert best["correlation"] == pytest.approx(expected_r("zebra", among=test)) and best["correlation"] > 0.95
    assert best["balanced_accuracy"] == 1.0
    assert best["round"] == 2 and best["significant"] is True
    assert best["answered"] == len(test) and best["failed"] == 0
    assert best["threshold"] == min(MAXIMA[i] for i in test if MAXIMA[i] > 0)  # the weakest "on" test text
    # Round 2 found it; rounds 3 and 4 did not improve: patience 2.
    assert body["rounds"] == 4 and body["stopped_because"] == "patience"
    assert body["correction"] == "holm"
    # Ranked best first.
    correlations = [h["correlation"] for h in body["hypotheses"] if h["correlation"] is not None]
    assert correlations == sorted(correlations, reverse=True)
    # Usage: one proposer call per round, one judge prompt (12 texts fit the token budget) per hypothesis.
    assert body["usage"]["llm_calls"] == 4 + 1 * 7 == stub.calls()
    assert body["usage_by_step"]["proposer"]["llm_calls"] == 4
    assert body["usage"]["total_tokens"] > 0
    assert API_KEY not in json.dumps(body)


def test_the_proposer_sees_top_texts_contrast_texts_and_the_scores_so_far(search_client):
    client, _, responder = search_client()
    body = search(client, max_rounds=2, patience=5)
    first, second = responder.proposer_prompts
    assert "[zebra]" in first and "Contrast texts" in first
    # The texts of the proposal part where the neuron is off that share the most words with
    # its top texts.
    assert 5 in body["splits"]["proposal"]
    assert "A horse ran across the dry plain" in first
    assert "Stock prices fell sharply today" not in first
    assert "Hypotheses already tested" not in first
    assert "Hypotheses already tested" in second
    for hypothesis in ("the text mentions a horse", "lions are present", "something striped"):
        assert hypothesis in second
    assert "r=-" in second  # "horse" answers track the neuron negatively, and the proposer is told


def test_p_values_and_holm_match_a_hand_computation(search_client):
    client, _, _ = search_client()
    body = search(client, max_rounds=4, patience=4)
    rows = body["hypotheses"]
    m = len(rows)
    assert m == 7
    # Every statistic is on the held-out texts only.
    test = held_out_texts(body)
    sentences, maxima = [SENTENCES[i] for i in test], [MAXIMA[i] for i in test]
    computed = {}
    for row in rows:
        answers = np.array([bool(mentions_rule(row["hypothesis"], s)) for s in sentences], dtype=float)
        if answers.min() == answers.max():
            assert row["correlation"] is None and row["p_value"] is None and row["ci95"] is None
            computed[row["hypothesis"]] = None
            continue
        r = float(np.corrcoef(answers, maxima)[0, 1])
        assert row["correlation"] == pytest.approx(r, abs=1e-12)
        n = len(sentences)
        # Fisher z by hand.
        z, half = np.arctanh(r) if abs(r) < 1 else None, 1.959963984540054 / np.sqrt(n - 3)
        if z is not None:
            assert row["ci95"] == pytest.approx([np.tanh(z - half), np.tanh(z + half)], abs=1e-12)
        computed[row["hypothesis"]] = row["p_value"]
    stats = pytest.importorskip("scipy.stats")
    for row in rows:
        if row["p_value"] is None:
            continue
        answers = np.array([bool(mentions_rule(row["hypothesis"], s)) for s in sentences], dtype=float)
        expected = stats.pearsonr(answers, maxima, alternative="greater").pvalue
        assert row["p_value"] == pytest.approx(expected, rel=1e-7)

    # Holm by hand: ascending p (undefined ones count, as p = 1, last), times (m - rank),
    # running maximum, capped at 1.
    order = sorted(computed, key=lambda h: 1.0 if computed[h] is None else computed[h])
    expected_holm, running = {}, 0.0
    for rank, hypothesis in enumerate(order):
        p = computed[hypothesis]
        running = max(running, min(1.0, (m - rank) * (1.0 if p is None else p)))
        expected_holm[hypothesis] = None if p is None else running
    for row in rows:
        if expected_holm[row["hypothesis"]] is None:
            assert row["p_holm"] is None and row["significant"] is False
        else:
            assert row["p_holm"] == pytest.approx(expected_holm[row["hypothesis"]], rel=1e-12)
            assert row["significant"] == (row["p_holm"] <= 0.05)
    # Correction only ever raises a p-value.
    assert all(r["p_holm"] >= r["p_value"] for r in rows if r["p_value"] is not None)
    assert by_hypothesis(body)["the text mentions a horse"]["significant"] is False


def test_held_out_texts_are_never_shown_to_the_proposer_nor_fed_back(search_client):
    client, _, responder = search_client()
    body = search(client, max_rounds=2, patience=5)
    splits = body["splits"]
    assert splits["held_out"] is True and splits["random_test"] == []
    assert sorted(splits["proposal"] + splits["test"]) == list(range(len(TEXTS)))
    assert not set(splits["proposal"]) & set(splits["test"])
    assert TEXTS.index(max(TEXTS, key=lambda t: max(t["values"]))) in splits["proposal"]
    prompts = [p.replace("[", "").replace("]", "") for p in responder.proposer_prompts]
    for i in splits["test"]:
        assert all(SENTENCES[i] not in p for p in prompts), SENTENCES[i]
    assert any(SENTENCES[i] in prompts[0] for i in splits["proposal"])
    # The scores fed back are on the proposal texts; the scores reported, on the test texts.
    fed_back = expected_r("horse", among=splits["proposal"])
    assert f"r={fed_back:+.2f}, " in responder.proposer_prompts[1]
    reported = by_hypothesis(body)["the text mentions a horse"]["correlation"]
    assert reported == pytest.approx(expected_r("horse", among=splits["test"]))
    # The same request splits the same way.
    assert search(client, max_rounds=2, patience=5)["splits"] == splits


def test_random_texts_only_test(search_client):
    client, _, responder = search_client()
    extra = [text("The zebra crossed the road", 5.0), text("A quiet morning in town"), text("Rain fell on the roof")]
    response = client.post(
        "/explain",
        json={"activations": TEXTS, "random_activations": extra, "strategy": "search", "max_rounds": 2},
    )
    body = strict_json(response)
    assert body["splits"]["random_test"] == [0, 1, 2]
    best = by_hypothesis(body)["the text mentions a zebra"]
    assert best["answered"] == len(body["splits"]["test"]) + len(extra)
    for sentence in ("".join(t["tokens"]) for t in extra):
        assert all(sentence not in p.replace("[", "").replace("]", "") for p in responder.proposer_prompts)


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"max_rounds": 1}, "max_rounds"),
        ({"max_rounds": 9, "patience": 9, "max_llm_calls": 6}, "max_llm_calls"),
        ({"max_rounds": 9, "patience": 9, "max_tokens": 9000}, "max_tokens"),
    ],
)
def test_the_search_stops_on_each_budget(search_client, options, reason):
    client, stub, _ = search_client(proposals=lambda request, k: numbered(f"word{k}a", f"word{k}b", f"word{k}c"))
    body = search(client, **options)
    assert body["stopped_because"] == reason
    if "max_llm_calls" in options:
        assert body["usage"]["llm_calls"] <= options["max_llm_calls"]
        # Round 1: 1 + 3 x 1 = 4 calls (12 texts fit one judge prompt); round 2 fits its
        # proposer call and one evaluation.
        assert [r["evaluated"] for r in body["history"]] == [3, 1]
    if "max_tokens" in options:
        assert body["usage"]["total_tokens"] <= options["max_tokens"]
    assert body["usage"]["llm_calls"] == stub.calls()
    if reason == "max_rounds":
        assert body["rounds"] == 1


def test_the_server_caps_the_budget(search_client):
    client, _, _ = search_client(search_max_rounds=2, search_max_llm_calls=40)
    body = search(client, max_rounds=50, max_llm_calls=1000, patience=9)
    assert body["budget"]["max_rounds"] == 2 and body["budget"]["max_llm_calls"] == 40
    assert body["budget"]["capped"] is True
    assert body["rounds"] <= 2


def test_a_budget_too_small_for_one_round_is_a_400(search_client):
    client, stub, _ = search_client()
    response = client.post("/explain", json={"activations": TEXTS, "strategy": "search", "max_llm_calls": 1})
    assert_error(response, 400, "invalid_request", "budget")
    assert stub.calls() == 0


def test_malformed_proposals_and_answers_are_survived(search_client):
    def rule(condition, sentence):
        if "fence" in sentence:
            return "maybe"  # never a usable answer: asked again once, then a failure
        if "cold" in sentence:
            return None  # no line at all for this text
        return mentions_rule(condition, sentence)

    proposals = [
        "I cannot help with that.",
        "Sure!\n1. the text mentions a zebra\n2.\n3. I'm sorry, I can't\n4. " + "x" * 500,
        "garbage",
    ]
    client, _, _ = search_client(proposals=proposals, rule=rule)
    body = search(client, max_rounds=5, patience=2)
    assert body["explanation"] == "the text mentions a zebra"
    best = body["hypotheses"][0]
    test = held_out_texts(body)
    failed_in_test = {2, 6, 8} & set(test)
    assert best["failed"] == len(failed_in_test) and best["answered"] == len(test) - len(failed_in_test)
    assert best["correlation"] == pytest.approx(expected_r("zebra", skip={2, 6, 8}, among=test))
    # Unusable answers are counted on every text the judge was asked about.
    assert body["failures"]["answers"] == 3
    assert {f["index"] for f in body["failures"]["examples"]} == {2, 6, 8}
    assert [r["proposed"] for r in body["history"]] == [0, 1, 0, 0]
    assert body["history"][1]["rejected"] >= 1
    assert body["stopped_because"] == "patience"


def test_near_duplicates_are_not_evaluated_twice(search_client):
    proposals = [
        numbered("the text mentions a zebra", "The text mentions zebras.", "the text mentions a horse"),
        numbered("text mentions horses", "the text mentions lions"),
    ]
    client, _, _ = search_client(proposals=proposals)
    body = search(client, max_rounds=2, patience=5)
    tried = [h["hypothesis"] for h in body["hypotheses"]]
    assert sorted(tried) == sorted(["the text mentions a zebra", "the text mentions a horse", "the text mentions lions"])
    assert [(d["hypothesis"], d["of"]) for d in body["duplicates"]] == [
        ("The text mentions zebras", "the text mentions a zebra"),
        ("text mentions horses", "the text mentions a horse"),
    ]
    assert [r["duplicates"] for r in body["history"]] == [1, 1]


def test_the_search_is_deterministic_given_the_answers(search_client):
    client, _, _ = search_client()
    first = search(client, max_rounds=4, patience=4)
    client, _, _ = search_client()
    second = search(client, max_rounds=4, patience=4)
    for key in ("explanation", "hypotheses", "rounds", "stopped_because", "usage", "history"):
        assert first[key] == second[key]


def test_simulate_best_scores_the_best_hypothesis(search_client):
    client, _, _ = search_client()
    body = search(client, max_rounds=2, patience=5, simulate_best=True)
    assert body["simulation"]["simulator"] == "batched"
    assert body["simulation_score"] is not None and body["simulation_score"] > 0.9
    assert body["usage"]["llm_calls"] == sum(
        body["usage_by_step"][step]["llm_calls"] for step in ("proposer", "judge", "simulation")
    )


def test_a_bad_key_is_a_502(make_client):
    with StubOpenAI(lambda request: StubReply(status=401, body=error_body("Incorrect API key", "invalid_api_key"))) as stub:
        client = make_client(openai_base_url=stub.base_url, openai_api_key=API_KEY, cache_path="")
        response = client.post("/explain", json={"activations": TEXTS, "strategy": "search"})
        body = assert_error(response, 502, "upstream_error")
        assert API_KEY not in body["error"]


def test_the_dry_run_returns_the_first_proposer_prompt_without_calling(search_client):
    client, stub, _ = search_client()
    body = search(client, dry_run=True, hypotheses_per_round=3)
    assert stub.calls() == 0
    assert body["explanation"] is None and body["prompt_tokens"] > 0
    assert "Propose 3 hypotheses" in body["messages"][-1]["content"]


# -- offline and validation --------------------------------------------------------------


def test_the_search_works_offline_out_of_the_box(client):
    body = search(client, simulate_best=True)
    assert body["offline"] is True and body["proposer"]["backend"] == "offline"
    assert body["explanation"] == 'the text mentions "zebra"'
    best = body["hypotheses"][0]
    assert body["held_out"] is True
    assert best["correlation"] == pytest.approx(expected_r("zebra", among=held_out_texts(body)))
    assert best["significant"] is True
    assert body["usage"]["llm_calls"] == 0 and body["correction"] == "holm"
    assert body["stopped_because"] in ("exhausted", "patience", "max_rounds")
    assert body["simulation"]["simulator"] == "offline" and body["simulation_score"] > 0.9


def test_the_offline_search_is_deterministic(client):
    first, second = search(client), search(client)
    assert first["hypotheses"] == second["hypotheses"]


def test_the_default_strategy_is_unchanged(client):
    body = strict_json(client.post("/explain", json={"activations": TEXTS}))
    assert body["strategy"] == "single" and "hypotheses" not in body


@pytest.mark.parametrize(
    "options, field",
    [
        ({"strategy": "exhaustive"}, "strategy"),
        ({"strategy": "search", "max_rounds": 0}, "max_rounds"),
        ({"strategy": "search", "hypotheses_per_round": 21}, "hypotheses_per_round"),
        ({"strategy": "search", "patience": 0}, "patience"),
        ({"strategy": "search", "max_tokens": -5}, "max_tokens"),
        ({"strategy": "search", "max_llm_calls": "many"}, "max_llm_calls"),
        ({"strategy": "search", "n": 3}, "n and score"),
    ],
)
def test_bad_search_options_are_a_400(client, options, field):
    response = client.post("/explain", json={"activations": TEXTS, **options})
    assert_error(response, 400, "invalid_request", field)


def test_nothing_to_explain_is_a_400(client):
    flat = [text("The cat sat"), text("A dog ran")]
    response = client.post("/explain", json={"activations": flat, "strategy": "search"})
    assert_error(response, 400, "invalid_request")


def test_search_disabled_by_the_server_is_a_400(make_client):
    client = make_client(search_max_rounds=0)
    response = client.post("/explain", json={"activations": TEXTS, "strategy": "search"})
    assert_error(response, 400, "invalid_request", "SEARCH_MAX_ROUNDS")
    assert strict_json(client.get("/health"))["search_caps"]["max_rounds"] == 0


@pytest.mark.parametrize(
    "activations, explanation",
    [
        ([{"tokens": ["a", ",", " b"], "values": [0, 5, 0]}, {"tokens": ["c", " d"], "values": [0, 0]}],
         'the text mentions ","'),
        ([{"tokens": ["he", " said", ' "', " hi"], "values": [0, 0, 5, 0]}, {"tokens": ["no"], "values": [0]}],
         "the text mentions \u201c\"\u201d"),
        # Only whitespace fires: no quotable token, so the offline explainer's description is tried.
        ([{"tokens": ["a", "\n", "b"], "values": [0, 5, 0]}, {"tokens": ["c", "d"], "values": [0, 0]}],
         'the token "\\n"'),
    ],
)
def test_the_offline_search_always_has_a_hypothesis(client, activations, explanation):
    response = client.post("/explain", json={"activations": activations, "strategy": "search"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert strict_json(response)["explanation"] == explanation


def test_a_request_too_small_to_hold_out_says_so_and_calls_nothing_significant(client):
    small = [TEXTS[0], TEXTS[1], TEXTS[5], TEXTS[6]]
    body = strict_json(client.post("/explain", json={"activations": small, "strategy": "search"}))
    assert body["held_out"] is False and body["splits"]["held_out"] is False
    assert "too few texts" in body["splits"]["note"]
    assert body["splits"]["proposal"] == body["splits"]["test"] == [0, 1, 2, 3]
    assert body["explanation"] == 'the text mentions "zebra"'
    best = body["hypotheses"][0]
    assert best["answered"] == 4 and best["p_value"] is not None
    assert body["significant"] == 0 and not any(h["significant"] for h in body["hypotheses"])


def test_a_search_near_its_deadline_stops_with_what_it_has(make_client):
    # Every call takes 0.5 s: round 1 (a proposer call, then 3 hypotheses x 3 batches on
    # 6 threads) takes about 1.5-2 s of the 4 s; a second round would not fit in what is left.
    with StubOpenAI(SearchResponder(ROUNDS), delay=0.5) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=4.0, cache_path="", llm_max_retries=0)
        body = search(client, max_rounds=5, patience=5)
        assert body["stopped_because"] == "deadline"
        # Round 1 is kept whole; a round 2, if the clock let it start, keeps what finished in time.
        round_one = {"the text mentions a horse", "lions are present", "something striped"}
        assert round_one <= {h["hypothesis"] for h in body["hypotheses"]}
        # Well before a whole second round (2 s more) could have run; loose for noisy machines.
        assert body["elapsed_ms"] < 4000 + 1800
        assert body["usage"]["llm_calls"] <= stub.calls()


def test_a_search_that_cannot_finish_one_round_is_a_504(make_client):
    with StubOpenAI(SearchResponder(ROUNDS), delay=2.0) as stub:
        client = make_client(openai_base_url=stub.base_url, request_timeout=0.5, cache_path="", llm_max_retries=0)
        response = client.post("/explain", json={"activations": TEXTS, "strategy": "search"})
        assert_error(response, 504, "upstream_timeout")
