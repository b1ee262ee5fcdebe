"""Writing explanations: show an LLM (or the offline heuristic) a neuron's top texts, clean its answer.

The flow: `records` (selection, normalisation, truncation) -> `styles` (the prompt) ->
a `llm.backend.ChatBackend` -> `parse` (the answer). `explain.explain` ties them together.
"""
