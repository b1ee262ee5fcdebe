"""Scoring routes: POST /score and POST /similarity."""
from __future__ import annotations

from flask import Blueprint, current_app, g

from scorer import service as scoring
from scorer.scorers import SIMULATION
from web.bodies import check_length, check_texts, deadline, respond, settings, validated
from web.errors import too_large
from web.models import ScoreRequest, SimilarityRequest, records

bp = Blueprint("scoring", __name__)

# The request's options that a scorer other than simulation may take; each takes those it knows.
_SCORER_OPTIONS = (
    "model", "judge", "activation_threshold", "batch_size", "random_fraction", "seed",
    "top_k", "rounds", "activating_per_round",
)


@bp.post("/score")
def score():
    req = validated(ScoreRequest)
    check_texts(activations=req.activations)
    check_length("explanation", req.explanation)
    runtime = current_app.extensions["runtime"]
    texts = records(req.activations)
    if req.scorer == SIMULATION:
        simulator = runtime.simulator(req.simulator, req.model)
        payload = scoring.score_by_simulation(req.explanation, texts, simulator, deadline=deadline())
    else:
        scorer = runtime.scorer(req.scorer, {name: getattr(req, name) for name in _SCORER_OPTIONS})
        payload = scoring.score_by_classifier(req.explanation, texts, scorer, deadline=deadline())
    g.log_fields.update(_log_fields(payload))
    return respond(payload)


@bp.post("/similarity")
def similarity():
    req = validated(SimilarityRequest)
    limit = settings().max_texts
    if len(req.references) > limit:
        raise too_large(f"references: {len(req.references)}; the limit is {limit}")
    check_length("explanation", req.explanation)
    for i, reference in enumerate(req.references):
        check_length(f"references[{i}]", reference)
    embedder = current_app.extensions["runtime"].text_embedder(req.model)
    payload = scoring.similarity(req.explanation, req.references, embedder, deadline=deadline())
    g.log_fields.update(embedder=payload["embedder"]["name"], usage=payload["usage"])
    return respond(payload)


def _log_fields(payload: dict) -> dict:
    """What the access log and /metrics record of a /score answer."""
    if payload["scorer"] == SIMULATION:
        scored_by = payload["simulator"]
        fields = {"simulator": scored_by["name"]}
    else:
        scored_by = payload["judge"]
        fields = {"scorer": payload["scorer"], "judge": scored_by["name"]}
    return {**fields, "model": scored_by["model"], "usage": payload["usage"], "failures": len(payload["failures"])}
