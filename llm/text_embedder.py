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


_LOCAL_CHUNK = 16  # texts per model call between deadline checks (about 0.1-0.5 s each)

class LocalTextEmbedder:
    """The packaged model (llm.embeddings.LocalEmbedder), shared with the offline simulator."""

    name = LOCAL
    offline = True

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.model = getattr(embedder, "name", "local")

    def embed(self, texts: Sequence[str], deadline: float | None = None) -> Embeddings:
        from llm.embeddings import EmbedderUnavailable

        texts = list(texts)
        parts = []
        try:
            # In chunks, with the deadline checked between them: 200 long texts take seconds.
            for start in range(0, len(texts), _LOCAL_CHUNK):
                _check(deadline)
                parts.append(np.asarray(self.embedder.embed(texts[start : start + _LOCAL_CHUNK]), dtype=np.float32))
        except EmbedderUnavailable as exc:
            raise BackendUnavailable(f"the local embedding model cannot run: {exc}") from None
        _check(deadline)
        rows = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        return Embeddings(vectors=rows, usage=Usage(), model=self.model)


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
