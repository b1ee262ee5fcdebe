"""The edge: LLM backends, local models, cache and token counting."""
