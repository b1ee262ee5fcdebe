"""Scoring routes: POST /score, POST /compare and POST /similarity."""
from __future__ import annotations

from flask import Blueprint, current_app, g

from core.records import to_records
from scorer import service as scoring
from scorer.guard import check_explanation, normalise_explanation
from scorer.scorers import SIMULATION
from web.bodies import check_length, check_texts, deadline, respond, settings, validated
from web.errors import ApiError, too_large
from web.models import CompareRequest, ScoreRequest, SimilarityRequest

bp = Blueprint("scoring", __name__)

# The request's options that a scorer other than simulation may take; each takes those it knows.
_SCORER_OPTIONS = (
    "model", "judge", "activation_threshold", "batch_size", "random_fraction", "seed",
    "top_k", "rounds", "activating_per_round",
)


def guarded(where: str, explanation: str) -> str:
    """The explanation on one line, or 400 `explanation_rejected` when it carries a forged
    simulator answer or opens a prompt section: checked before any backend call."""
    check_length(where, explanation)
    rejection = check_explanation(explanation)
    if rejection is not None:
        raise ApiError(400, rejection.code, f"{where}: {rejection.message}")
    line = normalise_explanation(explanation)
    if not line:
        raise ApiError(400, None, f"{where}: nothing is left once control characters are removed")
    return line


@bp.post("/score")
def score():
    req = validated(ScoreRequest)
    check_texts(activations=req.activations, random_activations=req.random_activations)
    explanation = guarded("explanation", req.explanation)
    runtime = current_app.extensions["runtime"]
    texts, random_texts = to_records(req.activations), to_records(req.random_activations)
    undefined = settings().undefined_score
    if req.scorer == SIMULATION:
        simulator = runtime.simulator(req.simulator, req.model)
        payload = scoring.score_by_simulation(
            explanation, texts, simulator, deadline=deadline(), random_records=random_texts, undefined=undefined
        )
    else:
        # The classifiers label each text by its own activation: random texts are more of them.
        scorer = runtime.scorer(req.scorer, {name: getattr(req, name) for name in _SCORER_OPTIONS})
        payload = scoring.score_by_classifier(
            explanation, texts + random_texts, scorer, deadline=deadline(), undefined=undefined
        )
    g.log_fields.update(_log_fields(payload))
    return respond(payload)


@bp.post("/compare")
def compare():
    req = validated(CompareRequest)
    check_texts(activations=req.activations, random_activations=req.random_activations)
    explanations = [guarded(f"explanations[{i}]", e) for i, e in enumerate(req.explanations)]
    runtime = current_app.extensions["runtime"]
    texts, random_texts = to_records(req.activations), to_records(req.random_activations)
    undefined = settings().undefined_score
    if req.scorer == SIMULATION:
        simulator = runtime.simulator(req.simulator, req.model)
        if req.dry_run:
            every = [r.tokens for r in texts + random_texts]
            return respond({"dry_run": True, "explanations": explanations, "simulator": simulator.name,
                            "model": simulator.model, "forecast": scoring.forecast(simulator, explanations, every)})
        payload = scoring.compare_by_simulation(
            explanations, texts, simulator, deadline=deadline(), random_records=random_texts, undefined=undefined
        )
    else:
        if req.dry_run:
            raise ApiError(400, None, "dry_run: a cost forecast is given for the simulation scorer only")
        scorer = runtime.scorer(req.scorer, {name: getattr(req, name) for name in _SCORER_OPTIONS})
        payload = scoring.compare_by_classifier(explanations, texts + random_texts, scorer, deadline=deadline(), undefined=undefined)
    g.log_fields.update(scorer=req.scorer, explanations=len(explanations), usage=payload["usage"])
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
