"""Estimated cost of LLM usage from configured per-model prices (pure functions).

`MODEL_PRICES` lists US dollars per million tokens, input then output, and
optionally the rate of cached input (prompt tokens the provider served from its
prefix cache): `gpt-4o-mini=0.15/0.60/0.075,gpt-4o=2.50/10`. Without a cached
rate, cached tokens cost the input rate (what a provider without a discount
bills). Prices change and differ by provider, so nothing is built in: with no
price for a model, there is no estimate (None).
"""
from __future__ import annotations

from llm.usage import Usage

# (input, output) or (input, output, cached input), USD per million tokens.
Prices = dict[str, tuple[float, ...]]


def parse_prices(text: str) -> Prices:
    """'model=in/out[/cached],...' -> {model: (in, out[, cached])}; ValueError naming the bad entry."""
    prices: Prices = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        model, sep, pair = entry.rpartition("=")
        rates = pair.split("/")
        try:
            if not sep or not model.strip() or len(rates) not in (2, 3):
                raise ValueError
            values = tuple(float(rate) for rate in rates)
            if not all(0 <= value < float("inf") for value in values):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"MODEL_PRICES entry {entry!r}: expected model=input/output or "
                "model=input/output/cached-input in USD per million tokens"
            ) from None
        prices[model.strip()] = values
    return prices


def estimate_cost(usage: Usage, model: str | None, prices: Prices) -> float | None:
    """US dollars for `usage` on `model`, or None when the model has no configured price."""
    if model is None or model not in prices:
        return None
    cost_in, cost_out, *rest = prices[model]
    cost_cached = rest[0] if rest else cost_in
    cached = min(max(0, usage.cached_prompt_tokens), usage.prompt_tokens)
    fresh = usage.prompt_tokens - cached
    return round((fresh * cost_in + cached * cost_cached + usage.completion_tokens * cost_out) / 1e6, 8)
