"""Sentence embeddings behind one call, from the packaged local model or an embeddings endpoint.

The embedding scorer and `/similarity` hold a `LocalTextEmbedder` (the
packaged MiniLM model, offline, the default) or an `ApiTextEmbedder` (any
OpenAI-compatible `/v1/embeddings`, with EMBEDDING_BACKEND=openai). Both return
`llm.backend.Embeddings`: unit-length rows, an all-zero row for a blank text,
and what the call cost.
"""
from __future__ import annotations

import base64
import time
from typing import Any, Sequence

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
    """An OpenAI-compatible embeddings endpoint, through the backend's `embed`.

    With a cache (the one of LLM answers), each text's vector is kept under the backend,
    base URL, model and text, so a text embedded once is never paid for again: only the
    misses are sent, in one call.
    """

    offline = False
    version = "1"

    def __init__(self, backend: EmbeddingBackend, model: str, cache: Any = None) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.model = model
        self.cache = cache

    def _key(self, text: str) -> dict:
        return {
            "backend": self.name,
            "base_url": getattr(self.backend, "base_url", ""),
            "model": self.model,
            "format": f"embedding/v{self.version}",
            "text": text,
        }

    def embed(self, texts: Sequence[str], deadline: float | None = None) -> Embeddings:
        _check(deadline)
        texts = list(texts)
        if self.cache is None:
            return self.backend.embed(texts, self.model, deadline)
        rows: list[np.ndarray | None] = [_vector_from_cache(self.cache.get(self._key(t))) for t in texts]
        misses = [i for i, row in enumerate(rows) if row is None]
        usage = Usage(cache_hits=len(texts) - len(misses))
        served_by = self.model
        if misses:
            fresh = self.backend.embed([texts[i] for i in misses], self.model, deadline)
            usage = usage + fresh.usage
            served_by = fresh.model or served_by
            for k, i in enumerate(misses):
                rows[i] = np.asarray(fresh.vectors[k], dtype=np.float32)
                if texts[i].strip():  # a blank text is a zero row, never sent: nothing to keep
                    self.cache.put(self._key(texts[i]), _vector_to_cache(rows[i]))
        widths = {row.shape[0] for row in rows if row is not None and row.any()}
        if len(widths) > 1:  # a cached width the model no longer gives: embed everything afresh
            again = self.backend.embed(texts, self.model, deadline)
            again.usage = usage + again.usage
            return again
        width = widths.pop() if widths else max((row.shape[0] for row in rows), default=0)
        vectors = np.zeros((len(texts), width), dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None and row.shape[0] == width:
                vectors[i] = row
        return Embeddings(vectors=vectors, usage=usage, model=served_by)


def _vector_to_cache(row: np.ndarray) -> dict:
    """A float32 row as base64 of its bytes: exact, and a quarter of the size of JSON floats."""
    return {"float32": base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")}


def _vector_from_cache(value: Any) -> np.ndarray | None:
    if not isinstance(value, dict) or not isinstance(value.get("float32"), str):
        return None
    try:
        row = np.frombuffer(base64.b64decode(value["float32"], validate=True), dtype="<f4")
    except ValueError:
        return None
    if row.size == 0 or not np.all(np.isfinite(row)):
        return None
    return row.astype(np.float32)
