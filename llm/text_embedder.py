"""Sentence embeddings behind one call, from the packaged local model or an embeddings endpoint.

The embedding scorer and `/similarity` hold a `LocalTextEmbedder` (the
packaged MiniLM model, offline, the default) or an `ApiTextEmbedder` (any
OpenAI-compatible `/v1/embeddings`, with EMBEDDING_BACKEND=openai). Both return
`llm.backend.Embeddings`: unit-length rows, an all-zero row for a blank text,
and what the call cost.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from llm.backend import EmbeddingBackend, Embeddings
from llm.errors import BackendUnavailable, DeadlineExceeded
from llm.usage import Usage

LOCAL = "local"


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed while embedding")


class LocalTextEmbedder:
    """The packaged model (llm.embeddings.LocalEmbedder), shared with the offline simulator."""

    name = LOCAL
    offline = True

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.model = getattr(embedder, "name", "local")

    def embed(self, texts: Sequence[str], deadline: float | None = None) -> Embeddings:
        from llm.embeddings import EmbedderUnavailable

        _check(deadline)
        try:
            rows = self.embedder.embed(list(texts))
        except EmbedderUnavailable as exc:
            raise BackendUnavailable(f"the local embedding model cannot run: {exc}") from None
        _check(deadline)
        return Embeddings(vectors=np.asarray(rows, dtype=np.float32), usage=Usage(), model=self.model)


class ApiTextEmbedder:
    """An OpenAI-compatible embeddings endpoint, through the backend's `embed`."""

    offline = False

    def __init__(self, backend: EmbeddingBackend, model: str) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.model = model

    def embed(self, texts: Sequence[str], deadline: float | None = None) -> Embeddings:
        _check(deadline)
        return self.backend.embed(list(texts), self.model, deadline)
