"""Explanation similarity (AdaCS, Lee et al. 2023): the cosine between the embeddings of
an explanation and of reference explanations, each and on average."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from llm.errors import UpstreamError
from llm.usage import Usage


def cosines(query: np.ndarray, rows: np.ndarray) -> list[float | None]:
    """Cosine of `query` with each row; None where either vector is zero."""
    query = np.asarray(query, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, query.size)
    q_norm = np.linalg.norm(query)
    out: list[float | None] = []
    for row in rows:
        norm = np.linalg.norm(row)
        if q_norm == 0 or norm == 0:
            out.append(None)
        else:
            out.append(float(np.clip(np.dot(query, row) / (q_norm * norm), -1.0, 1.0)))
    return out


@dataclass
class SimilarityResult:
    similarities: list[float | None]
    mean: float | None
    usage: Usage = field(default_factory=Usage)


def explanation_similarity(
    explanation: str, references: Sequence[str], embedder, *, deadline: float | None = None
) -> SimilarityResult:
    """Cosine similarity of `explanation` with every reference, and their mean."""
    result = embedder.embed([explanation, *references], deadline)
    vectors = np.asarray(result.vectors)
    if vectors.shape[0] != len(references) + 1:
        raise UpstreamError(f"{vectors.shape[0]} embeddings for {len(references) + 1} texts")
    similarities = cosines(vectors[0], vectors[1:])
    known = [s for s in similarities if s is not None]
    mean = float(np.mean(known)) if known else None
    return SimilarityResult(similarities=similarities, mean=mean, usage=result.usage)
