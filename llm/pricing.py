"""Estimated cost of LLM usage from configured per-model prices (pure functions).

`MODEL_PRICES` lists US dollars per million tokens, input then output:
`gpt-4o-mini=0.15/0.60,gpt-4o=2.50/10`. Prices change and differ by provider, so
nothing is built in: with no price for a model, there is no estimate (None).
"""
from __future__ import annotations

from llm.usage import Usage

Prices = dict[str, tuple[float, float]]


def parse_prices(text: str) -> Prices:
    """'model=in/out,...' -> {model: (in, out)}; raises ValueError naming the bad entry."""
    prices: Prices = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        model, sep, pair = entry.rpartition("=")
        rates = pair.split("/")
        try:
            if not sep or not model.strip() or len(rates) != 2:
                raise ValueError
            cost_in, cost_out = float(rates[0]), float(rates[1])
            if not (0 <= cost_in < float("inf") and 0 <= cost_out < float("inf")):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"MODEL_PRICES entry {entry!r}: expected model=input/output in USD per million tokens"
            ) from None
        prices[model.strip()] = (cost_in, cost_out)
    return prices


def estimate_cost(usage: Usage, model: str | None, prices: Prices) -> float | None:
    """US dollars for `usage` on `model`, or None when the model has no configured price."""
    if model is None or model not in prices:
        return None
    cost_in, cost_out = prices[model]
    return round((usage.prompt_tokens * cost_in + usage.completion_tokens * cost_out) / 1e6, 8)
