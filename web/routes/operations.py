"""Operations routes: GET /health and GET /openapi.json (GET /metrics is web.observability's)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from core import __version__
from core.names import OFFLINE
from scorer.scorers import SCORER_NAMES
from scorer.simulators import SIMULATOR_NAMES
from web.openapi import openapi_document

bp = Blueprint("operations", __name__)

VERSION = __version__


@bp.get("/health")
def health():
    runtime = current_app.extensions["runtime"]
    s = current_app.extensions["settings"]
    default = s.default_simulator
    cache = runtime.cache_status()  # a broken cache is a miss, not a failure: "degraded"
    return jsonify(
        {
            "status": "degraded" if cache.get("status") == "degraded" else "ok",
            "cache": cache,
            "version": VERSION,
            "simulator": {
                "default": default,
                "offline": default == OFFLINE,
                "available": list(SIMULATOR_NAMES),
                "model": None if default == OFFLINE else s.simulator_model,
            },
            "scorers": {
                "available": list(SCORER_NAMES),
                "default_judge": runtime.default_judge,
                "embedding_backend": s.embedding_backend or "local",
                "embedding_model": s.embedding_model if s.embedding_backend == "openai" else None,
            },
            "explainer": {
                "default_backend": s.default_explainer_backend,
                "model": None if s.default_explainer_backend == OFFLINE else s.explainer_model,
            },
            "llm_backend": {
                "name": s.llm_backend,
                "capabilities": sorted(runtime.backend.capabilities) if runtime.backend else [],
            },
            **s.public_summary(),
        }
    )


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(VERSION))
