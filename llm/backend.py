"""The LLM backend role: messages (or a prompt) in, text, logprobs where offered, and usage out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from llm.usage import Usage

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TokenLogprob:
    """One generated (or echoed) token with its logprob and the top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = None
    model: str | None = None
    # Why the model stopped, as the server says: "stop", "length" (cut at max_tokens), ...
    # None when the server does not say. Read by llm.answers.read_answer.
    finish_reason: str | None = None


class ChatBackend(Protocol):
    name: str  # "openai" for any OpenAI-compatible server

    def chat(
        self,
        messages: list[dict],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        json_mode: bool = False,
        top_logprobs: int | None = None,
        deadline: float | None = None,
    ) -> Completion:
        """One chat completion. Raises llm.errors.* on failure."""
        ...

    def complete(
        self,
        prompt: str,
        *,
        model: str,
        max_tokens: int = 0,
        echo: bool = True,
        logprobs: int = 5,
        deadline: float | None = None,
    ) -> Completion:
        """A completions-endpoint call; with echo, `logprobs` covers the prompt's tokens."""
        ...


@dataclass
class Embeddings:
    """One unit-length float32 row per input text (an all-zero row for a blank text)."""

    vectors: "np.ndarray"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


class EmbeddingBackend(Protocol):
    name: str

    def embed(self, texts: Sequence[str], model: str, deadline: float | None = None) -> Embeddings:
        """Embed every text with `model` in one call. Raises llm.errors.* on failure."""
        ...
