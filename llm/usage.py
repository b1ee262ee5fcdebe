"""What the LLM work behind one response cost."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Usage:
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    # Prompt tokens the provider served from its prefix cache (part of prompt_tokens,
    # billed at the cached-input rate): `usage.prompt_tokens_details.cached_tokens`.
    cached_prompt_tokens: int = 0
    # True when some token counts are tiktoken estimates (the server sent no `usage`).
    estimated: bool = False
    # US dollars, from MODEL_PRICES; None when some call's model has no price.
    cost_usd: float | None = None

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            llm_calls=self.llm_calls + other.llm_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cache_hits=self.cache_hits + other.cache_hits,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            estimated=self.estimated or other.estimated,
            cost_usd=_add_costs(self, other),
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict:
        out = asdict(self)
        out["estimated_cost_usd"] = out.pop("cost_usd")
        return {**out, "total_tokens": self.total_tokens}


def _add_costs(a: Usage, b: Usage) -> float | None:
    """A sum of costs is known only when every paid call's cost is; work without calls is free."""
    parts = [u for u in (a, b) if u.llm_calls or u.cost_usd is not None]
    if not parts or any(u.cost_usd is None for u in parts):
        return None
    return round(sum(u.cost_usd for u in parts), 8)
