"""What a backend can do, by name: a backend declares a set of these, and a simulator,
judge or embedder that needs one the backend lacks is refused before any call."""
from __future__ import annotations

CHAT = "chat"  # chat completions
TOP_LOGPROBS = "top_logprobs"  # per generated token, the likeliest alternatives and their logprobs
COMPLETIONS_LOGPROBS = "completions_logprobs"  # completions with echo and prompt logprobs (vLLM)
EMBEDDINGS = "embeddings"

ALL = frozenset({CHAT, TOP_LOGPROBS, COMPLETIONS_LOGPROBS, EMBEDDINGS})


def parse(text: str) -> frozenset[str]:
    """'chat, top_logprobs' -> the set; ValueError naming an unknown capability."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - ALL)
    if unknown:
        raise ValueError(f"unknown capabilities {', '.join(unknown)}; known: {', '.join(sorted(ALL))}")
    return names
