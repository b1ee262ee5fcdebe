import pytest

from llm.pricing import estimate_cost, parse_prices
from llm.usage import Usage


def test_prices_parse_per_model():
    assert parse_prices("gpt-4o-mini=0.15/0.60, org/model-7b=0/0") == {
        "gpt-4o-mini": (0.15, 0.60),
        "org/model-7b": (0.0, 0.0),
    }
    assert parse_prices("") == {}


@pytest.mark.parametrize("bad", ["gpt-4o", "gpt-4o=1", "=1/2", "m=a/b", "m=-1/2", "m=1/inf"])
def test_bad_prices_name_the_entry(bad):
    with pytest.raises(ValueError, match="MODEL_PRICES"):
        parse_prices(bad)


def test_cost_is_tokens_times_price_per_million():
    usage = Usage(llm_calls=2, prompt_tokens=5838, completion_tokens=80)
    cost = estimate_cost(usage, "gpt-4o-mini", {"gpt-4o-mini": (0.15, 0.60)})
    assert cost == pytest.approx((5838 * 0.15 + 80 * 0.60) / 1e6)
    assert estimate_cost(usage, "other", {"gpt-4o-mini": (0.15, 0.60)}) is None
    assert estimate_cost(usage, None, {}) is None


def test_costs_add_up_only_when_every_paid_call_is_priced():
    priced = Usage(llm_calls=1, prompt_tokens=10, cost_usd=0.5)
    unpriced = Usage(llm_calls=1, prompt_tokens=10)
    cached = Usage(cache_hits=3)
    assert (priced + priced).cost_usd == 1.0
    assert (priced + cached).cost_usd == 0.5  # work without calls is free
    assert (priced + unpriced).cost_usd is None  # a partial sum would understate
    assert (Usage() + cached).cost_usd is None
    assert (priced + unpriced).to_dict()["estimated_cost_usd"] is None
