"""`POST /score` and `POST /similarity`: a validated request in, the response body out.

The views call these and add nothing but timing; nothing here imports Flask.
"""
from __future__ import annotations

from typing import Any

from scorer.records import to_records
from scorer.scorers import SIMULATION, build_scorer
from scorer.scorers.simulation import score_explanation
from scorer.similarity import explanation_similarity
from scorer.simulators import OFFLINE
from scorer.simulators.base import failures_to_dicts


def score_by_simulation(req: Any, runtime: Any, *, deadline: float | None) -> dict:
    """The /score response for `scorer: "simulation"` (`req` is api.ScoreRequest)."""
    simulator = runtime.simulator(req.simulator, req.model)
    result = score_explanation(req.explanation, to_records(req.activations), simulator, deadline=deadline)
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
    }


def score_by_classifier(req: Any, runtime: Any, *, deadline: float | None) -> dict:
    """The /score response for detection, fuzzing or embedding: Neuronpedia's keys, `simulations` empty.

    Raises ScorerInputError when the texts cannot be scored this way (HTTP 400).
    """
    options = {
        name: getattr(req, name)
        for name in ("model", "judge", "activation_threshold", "batch_size", "random_fraction", "seed")
    }
    scorer = build_scorer(req.scorer, runtime, options)
    result = scorer.score(req.explanation, to_records(req.activations), deadline=deadline)
    details = dict(result.details)
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
    }


def similarity(req: Any, runtime: Any, *, deadline: float | None) -> dict:
    """The /similarity response (`req` is api.SimilarityRequest)."""
    embedder = runtime.text_embedder(req.model)
    result = explanation_similarity(req.explanation, req.references, embedder, deadline=deadline)
    return {
        "similarities": result.similarities,
        "mean": result.mean,
        "metric": "cosine",
        "embedder": {"name": embedder.name, "model": embedder.model, "offline": embedder.offline},
        "offline": embedder.offline,
        "usage": result.usage.to_dict(),
    }
