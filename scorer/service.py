"""`POST /score` and `POST /similarity`: plain inputs and built objects in, the response body out.

The HTTP layer builds the simulator, scorer or embedder (through the composition root) and
calls these; nothing here imports Flask or reads settings.
"""
from __future__ import annotations

from typing import Any, Sequence

from core.names import OFFLINE
from core.records import ActivationRecord
from scorer.scorers import SIMULATION
from scorer.scorers.base import Scorer
from scorer.scorers.quantiles import correlation_by_bin
from scorer.scorers.simulation import score_explanation
from scorer.similarity import explanation_similarity
from scorer.simulators.base import Simulator, failures_to_dicts


def score_by_simulation(
    explanation: str, records: Sequence[ActivationRecord], simulator: Simulator, *, deadline: float | None
) -> dict:
    """The /score response for `scorer: "simulation"`."""
    result = score_explanation(explanation, records, simulator, deadline=deadline)
    return {
        "score": result.score,
        "simulations": result.simulations_to_dicts(),
        "scorer": SIMULATION,
        "metric": result.metric,
        "simulator": {
            "name": simulator.name,
            "model": simulator.model,
            "offline": simulator.name == OFFLINE,
        },
        "texts_scored": sum(s is not None for s in result.scored),
        "failures": failures_to_dicts(result.failures),
        "usage": result.usage.to_dict(),
        "quantiles": correlation_by_bin(result.records, result.predicted()),
    }


def score_by_classifier(
    explanation: str, records: Sequence[ActivationRecord], scorer: Scorer, *, deadline: float | None
) -> dict:
    """The /score response for a scorer other than simulation: Neuronpedia's keys, `simulations` empty.

A scorer that breaks its result down by activation level (detection, fuzzing) puts
`quantiles` in its details; the response lifts it beside `score`, where the
simulation scorer's is.

    Raises ScorerInputError when the texts cannot be scored this way (HTTP 400).
    """
    result = scorer.score(explanation, records, deadline=deadline)
    details = dict(result.details)
    extra = {"quantiles": details.pop("quantiles")} if "quantiles" in details else {}
    return {
        "score": result.score,
        "simulations": [],
        "scorer": scorer.name,
        "metric": result.metric,
        "judge": scorer.scored_by,
        "offline": scorer.scored_by["offline"],
        "texts_scored": details.pop("texts_scored", None),
        "texts": result.per_text,
        "failures": failures_to_dicts(result.failures),
        "usage": result.usage.to_dict(),
        "details": details,
        **extra,
    }


def similarity(explanation: str, references: Sequence[str], embedder: Any, *, deadline: float | None) -> dict:
    """The /similarity response: cosine similarity with each reference, and their mean."""
    result = explanation_similarity(explanation, references, embedder, deadline=deadline)
    return {
        "similarities": result.similarities,
        "mean": result.mean,
        "metric": "cosine",
        "embedder": {"name": embedder.name, "model": embedder.model, "offline": embedder.offline},
        "offline": embedder.offline,
        "usage": result.usage.to_dict(),
    }
