"""What a score costs as the provider bills it: prompt tokens served from its prefix cache
(`usage.cached_prompt_tokens`) priced at the cached-input rate of MODEL_PRICES."""
from __future__ import annotations

import pytest

from llm.pricing import estimate_cost, parse_prices
from llm.usage import Usage
from scorer.simulators.compact import CompactSimulator
from tests.conftest import NEURONPEDIA_EXAMPLE
from tests.stub_openai import PrefixCache, StubOpenAI, StubReply, chat_body
from tests.test_api_score import strict_json

ANIMALS = {"explanation": "fox and leopard", "activations": NEURONPEDIA_EXAMPLE["activations"]}


def test_a_third_rate_prices_cached_input():
    assert parse_prices("m=1/2/0.25, n=1/2") == {"m": (1.0, 2.0, 0.25), "n": (1.0, 2.0)}
    usage = Usage(llm_calls=1, prompt_tokens=2000, completion_tokens=100, cached_prompt_tokens=1536)
    assert estimate_cost(usage, "m", parse_prices("m=1/2/0.25")) == pytest.approx(
        (464 * 1.0 + 1536 * 0.25 + 100 * 2.0) / 1e6
    )
    # Without a cached rate, cached tokens cost the input rate.
    assert estimate_cost(usage, "n", parse_prices("n=1/2")) == pytest.approx((2000 * 1.0 + 100 * 2.0) / 1e6)


@pytest.mark.parametrize("bad", ["m=1/2/3/4", "m=1/2/x", "m=1/2/-1", "m=1/2/inf"])
def test_bad_cached_rates_name_the_entry(bad):
    with pytest.raises(ValueError, match="cached-input"):
        parse_prices(bad)


def test_cached_tokens_add_up_and_are_reported():
    total = Usage(llm_calls=1, prompt_tokens=10, cached_prompt_tokens=4) + Usage(
        llm_calls=1, prompt_tokens=20, cached_prompt_tokens=16
    )
    assert total.cached_prompt_tokens == 20
    assert total.to_dict()["cached_prompt_tokens"] == 20


def test_the_backend_reads_cached_tokens_from_the_answer(make_backend):
    def handler(request):
        body = chat_body(request, "ok")
        body["usage"]["prompt_tokens_details"] = {"cached_tokens": 7}
        return body

    with StubOpenAI(handler) as stub:
        completion = make_backend(stub.base_url).chat([{"role": "user", "content": "hi"}], model="m")
    assert completion.usage.cached_prompt_tokens == 7


@pytest.mark.parametrize(
    "details, expected",
    [(None, 0), ({}, 0), ({"cached_tokens": None}, 0), ({"cached_tokens": 10**9}, "all"), ({"cached_tokens": -3}, 0)],
)
def test_missing_or_odd_cached_counts_are_safe(make_backend, details, expected):
    def handler(request):
        body = chat_body(request, "ok")
        if details is not None:
            body["usage"]["prompt_tokens_details"] = details
        return body

    with StubOpenAI(handler) as stub:
        usage = make_backend(stub.base_url).chat([{"role": "user", "content": "hi"}], model="m").usage
    assert usage.cached_prompt_tokens == (usage.prompt_tokens if expected == "all" else expected)


def test_stub_prefix_cache_counts_whole_blocks_from_the_minimum():
    cache = PrefixCache(minimum=32, block=8)
    long = [{"role": "system", "content": "word " * 100}, {"role": "user", "content": "first"}]
    assert cache.cached_tokens(long) == 0  # nothing seen yet
    again = [long[0], {"role": "user", "content": "second"}]
    cached = cache.cached_tokens(again)
    assert cached >= 96 and cached % 8 == 0
    assert cache.cached_tokens([{"role": "user", "content": "short"}]) == 0


def test_a_second_explanation_on_the_same_texts_reuses_the_cached_prefix(make_backend):
    # The compact prompt puts the texts before the explanation: a provider's prefix cache
    # serves them for the next explanation too.
    texts = [a["tokens"] for a in ANIMALS["activations"]] * 6
    with StubOpenAI(prefix_cache=PrefixCache(minimum=256, block=32)) as stub:
        simulator = CompactSimulator(make_backend(stub.base_url), "stub-model")
        first = simulator.simulate("fox and leopard", texts).usage
        second = simulator.simulate("fast animals", texts).usage
    assert first.cached_prompt_tokens == 0
    assert second.cached_prompt_tokens > 0.8 * second.prompt_tokens
    assert second.cached_prompt_tokens % 32 == 0


def test_score_reports_cached_tokens_and_bills_them_at_the_cached_rate(make_client):
    with StubOpenAI(prefix_cache=PrefixCache(minimum=64, block=16)) as stub:
        client = make_client(
            openai_base_url=stub.base_url,
            simulator_model="stub-model",
            model_prices="stub-model=1.0/2.0/0.1",
            request_timeout=10.0,
        )
        first = strict_json(client.post("/score", json={**ANIMALS, "simulator": "compact"}))
        second = strict_json(
            client.post("/score", json={**ANIMALS, "explanation": "leopards", "simulator": "compact"})
        )
    assert first["usage"]["cached_prompt_tokens"] == 0
    usage = second["usage"]
    assert 0 < usage["cached_prompt_tokens"] < usage["prompt_tokens"]
    fresh = usage["prompt_tokens"] - usage["cached_prompt_tokens"]
    expected = (fresh * 1.0 + usage["cached_prompt_tokens"] * 0.1 + usage["completion_tokens"] * 2.0) / 1e6
    assert usage["estimated_cost_usd"] == pytest.approx(expected)


def test_an_error_reply_reports_no_cached_tokens():
    with StubOpenAI(prefix_cache=PrefixCache()) as stub:
        stub.enqueue(StubReply(status=500))
        import urllib.request

        request = urllib.request.Request(
            stub.base_url + "/chat/completions", data=b'{"messages": []}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
    assert "prompt_tokens_details" not in info.value.read().decode()


# -- the judge: the same discipline ---------------------------------------------------------


def test_judge_batches_are_cut_by_the_token_budget():
    from scorer.judge import token_batches

    assert token_batches([64] * 20, None, 2048) == [list(range(20))]
    assert [len(b) for b in token_batches([64] * 20, 5, 2048)] == [5, 5, 5, 5]  # a request's cap
    assert token_batches([100, 100, 100, 100, 500], None, 250) == [[0, 1], [2, 3], [4]]
    assert token_batches([3, 3], None, None) == [[0, 1]]


def test_judge_prompt_keeps_the_texts_before_the_condition():
    from scorer.judge import DETECTION, build_messages, render_text

    rendered = [render_text(["The", " fox"]), render_text(["A", " table"])]
    a = build_messages(DETECTION, "animals", rendered)
    b = build_messages(DETECTION, "furniture", rendered)
    assert a[:-1] == b[:-1]
    assert a[-1]["content"].startswith("Text 1: The fox\nText 2: A table\n\nDescription (quoted): \"animals\"")
    assert b[-1]["content"].split("Description (quoted):")[0] == a[-1]["content"].split("Description (quoted):")[0]


def test_a_second_condition_on_the_same_texts_is_mostly_cached(make_backend):
    from scorer.judge import judge
    from tests.stub_openai import JudgeResponder

    texts = [a["tokens"] for a in ANIMALS["activations"]] * 8
    with StubOpenAI(JudgeResponder(), prefix_cache=PrefixCache(minimum=128, block=16)) as stub:
        backend = make_backend(stub.base_url)
        first = judge(backend, "stub-model", "foxes", texts, batch_size=None, batch_tokens=2048)
        second = judge(backend, "stub-model", "leopards", texts, batch_size=None, batch_tokens=2048)
    assert first.usage.llm_calls == second.usage.llm_calls == 1
    assert first.usage.cached_prompt_tokens == 0
    assert second.usage.cached_prompt_tokens > 0.8 * second.usage.prompt_tokens
    assert None not in second.answers


# -- API embeddings, cached like chat answers ------------------------------------------------


def test_api_embeddings_are_cached_per_text(make_backend):
    import numpy as np

    from llm.cache import SQLiteCache
    from llm.text_embedder import ApiTextEmbedder

    cache = SQLiteCache(":memory:")
    with StubOpenAI() as stub:
        embedder = ApiTextEmbedder(make_backend(stub.base_url), "emb-model", cache=cache)
        first = embedder.embed(["fast fox", "slow table", "  "])
        assert stub.calls() == 1 and first.usage.llm_calls == 1 and first.usage.cache_hits == 0
        again = embedder.embed(["slow table", "fast fox", "  "])
        assert stub.calls() == 1 and again.usage.llm_calls == 0 and again.usage.cache_hits == 2
        assert np.array_equal(again.vectors[0], first.vectors[1]) and np.array_equal(again.vectors[1], first.vectors[0])
        assert not again.vectors[2].any()  # a blank text stays a zero row
        mixed = embedder.embed(["fast fox", "a new leopard"])
        assert stub.calls() == 2 and mixed.usage.cache_hits == 1
        assert stub.requests[-1].body["input"] == ["a new leopard"]  # only the miss is sent
        other = ApiTextEmbedder(make_backend(stub.base_url), "another-model", cache=cache)
        other.embed(["fast fox"])
        assert stub.calls() == 3  # the model is part of the key


def test_the_runtime_gives_the_api_embedder_the_cache(make_client):
    with StubOpenAI() as stub:
        client = make_client(
            openai_base_url=stub.base_url, embedding_backend="openai", cache_path=":memory:", request_timeout=10.0
        )
        body = {"explanation": "fast fox", "references": ["quick fox", "wooden table"]}
        first = strict_json(client.post("/similarity", json=body))
        second = strict_json(client.post("/similarity", json=body))
        assert stub.calls() == 1
    assert second["usage"]["cache_hits"] == 3 and second["usage"]["llm_calls"] == 0
    assert second["similarities"] == first["similarities"]


def test_the_runtime_gives_the_judge_the_token_budget():
    from runtime import Runtime
    from runtime.settings import Settings

    class Backend:
        name = "fake"
        capabilities = frozenset({"chat"})

    runtime = Runtime(Settings(cache_path="", openai_base_url="http://x/v1", simulator_batch_tokens=300), backend=Backend())
    judge = runtime.judge("openai")
    assert judge.batch_tokens == 300 and judge.batch_size is None
    assert runtime.judge("openai", batch_size=5).batch_size == 5
    assert runtime.judge("openai").forecast([["a"] * 200] * 4)[0] == 4  # 200 + 200 > 300: one text a call
