"""What the explainer refuses; each is a ValueError, so the HTTP layer can answer 400."""
from __future__ import annotations


class ExplainerError(ValueError):
    """Base of the explainer's own refusals (the LLM's failures are llm.errors.*)."""


class UnknownStyle(ExplainerError):
    """A style name that is not in the registry."""


class NothingToExplain(ExplainerError):
    """No token of any text activates (every value <= 0), so there is no pattern to describe."""


class PromptTooLong(ExplainerError):
    """Even the smallest prompt (one text, trimmed around its maximum) exceeds the token budget."""
