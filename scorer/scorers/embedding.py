"""Embedding (delphi): is the explanation closer to the texts on which the neuron activates?

The explanation is embedded as the query and each text (its tokens joined, as
sent) as a document; the score is the ROC-AUC of the query-document cosine for
activating (max >= `activation_threshold` x the request's max) against
non-activating texts: 1.0 when every activating text is closer than every other,
0.5 for chance. No LLM: the packaged local model by default, an embeddings
endpoint when configured. The local model reads at most 128 word pieces of a
text; the rest is cut.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.records import ActivationRecord
from llm.errors import UpstreamError
from scorer import math
from scorer.scorers.base import ScorerResult, class_details, scored_by, split_classes
from scorer.scorers.detection import DEFAULT_ACTIVATION_THRESHOLD, label_name
from scorer.similarity import cosines

METRIC = "auc"


def document(tokens: Sequence[str]) -> str:
    return "".join(tokens)


class EmbeddingScorer:
    name = "embedding"
    metric = METRIC

    def __init__(self, embedder, *, activation_threshold: float = DEFAULT_ACTIVATION_THRESHOLD) -> None:
        self.embedder = embedder
        self.activation_threshold = activation_threshold
        self.scored_by = scored_by(embedder)

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ) -> ScorerResult:
        records = list(records)
        labels, cut = split_classes(records, self.activation_threshold, self.name)
        result = self.embedder.embed([explanation, *(document(r.tokens) for r in records)], deadline)
        vectors = np.asarray(result.vectors)
        if vectors.shape[0] != len(records) + 1:
            raise UpstreamError(f"{vectors.shape[0]} embeddings for {len(records) + 1} texts")
        if not np.any(vectors[0]):
            raise UpstreamError("the explanation's embedding is all zeros")
        # A blank text's zero row is as far from the explanation as can be: similarity 0.
        similarities = [0.0 if s is None else s for s in cosines(vectors[0], vectors[1:])]
        per_text = [
            {"index": i, "label": label_name(y), "max_activation": float(r.max_value), "similarity": s}
            for i, (r, y, s) in enumerate(zip(records, labels, similarities))
        ]
        return ScorerResult(
            score=math.roc_auc(similarities, labels),
            metric=self.metric,
            per_text=per_text,
            usage=result.usage,
            details={
                **class_details(self.activation_threshold, cut, labels),
                "texts_scored": len(records),
            },
        )
