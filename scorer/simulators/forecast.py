"""What a simulation will cost before it runs: LLM calls, prompt tokens, and the most
completion tokens those calls may write. Built from each format's own prompt builder, so a
dry run counts exactly the prompts a real run would send (cache hits make it cheaper)."""
from __future__ import annotations

from typing import Any, Sequence

from llm.tokens import count_message_tokens, count_tokens


def forecast(simulator: Any, explanation: str, texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
    """(calls, prompt tokens, most completion tokens) of `simulator` on `texts`."""
    texts = [list(t) for t in texts]
    cap = int(getattr(simulator, "max_output_tokens", 0))
    name = simulator.name
    if name == "batched":
        from scorer.simulators.batched import build_messages

        batches = simulator._batches(list(range(len(texts))), texts)
        prompts = [count_message_tokens(build_messages(explanation, [texts[i] for i in b])) for b in batches]
        return len(batches), sum(prompts), cap * len(batches)
    if name in ("json", "logprob"):
        from importlib import import_module

        module = import_module("scorer.simulators.json_per_text" if name == "json" else "scorer.simulators.logprob_ev")
        prompts = [count_message_tokens(module.build_messages(explanation, t)) for t in texts]
        return len(texts), sum(prompts), cap * len(texts)
    if name == "all_at_once":
        from scorer.simulators.all_at_once import build_prompt

        return len(texts), sum(count_tokens(build_prompt(explanation, t)) for t in texts), 0
    return 0, 0, 0  # a simulator that calls no LLM (offline)
