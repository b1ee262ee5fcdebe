"""`/openapi.json`: the contract, generated from the request models and the error table."""
from __future__ import annotations

from typing import Any

from web.errors import CODES
from web.models import CompareRequest, ExplainRequest, ScoreRequest, SimilarityRequest

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
}


# What the server checks that JSON Schema cannot state: a body the schema admits may still be
# a 400 (or 413) for one of these, each named by the id before the colon. Published with each
# request schema as `x-server-rules`; the fuzz test holds every such answer against this list.
_TEXTS = "tokens-values: each text has as many values as tokens"
_LIMITS = "limits: at most MAX_TEXTS texts, MAX_TOKENS_PER_TEXT tokens a text, MAX_EXPLANATION_CHARS characters (413)"
_BLANK = "explanation-blank: an explanation must keep a character once white space and control characters are removed"
_FORGED = (
    "explanation-rejected: an explanation carrying text in the shape of a simulator or judge answer, "
    "or opening a prompt section, is a 400 explanation_rejected"
)
_CLASSES = (
    "classes: the scorers other than simulation need activating and non-activating texts (fuzzing: "
    "two activating texts; intruder: enough texts for a round) under activation_threshold"
)
_UNICODE = (
    "unicode: an explanation or reference is Unicode text: a lone surrogate (\\ud800, which JSON can "
    "carry) is refused there; a token may hold one and is echoed as sent"
)
SERVER_RULES: dict[str, list[str]] = {
    "ScoreRequest": [_TEXTS, _LIMITS, _BLANK, _FORGED, _CLASSES, _UNICODE],
    "CompareRequest": [_TEXTS, _LIMITS, _BLANK, _FORGED, _CLASSES, _UNICODE],
    "ExplainRequest": [
        _TEXTS,
        _LIMITS,
        "activating: at least one value must be above 0: there is nothing to explain otherwise",
        "prompt-budget: max_prompt_tokens must hold the prompt's instructions",
        "heldout: score: true needs texts to score candidates on (random_activations, or more top texts than top_k)",
        "strategy: n and score belong to strategy single; a search ranks its own hypotheses",
    ],
    "SimilarityRequest": [_LIMITS, _UNICODE],
}


def openapi_document(version: str) -> dict:
    """The contract, generated from the request models above."""
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ScoreRequest, CompareRequest, ExplainRequest, SimilarityRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schema["x-server-rules"] = SERVER_RULES[model.__name__]
        schemas[model.__name__] = schema

    def errors(*statuses: int) -> dict:
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        return {str(s): {"description": CODES[s], **ref} for s in statuses}

    def post(summary: str, request: str) -> dict:
        return {
            "post": {
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}
                    },
                },
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    **errors(400, 401, 413, 415, 429, 502, 503, 504),
                },
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "neuron-interp", "version": version},
        "paths": {
            "/score": post("Score an explanation by simulating activations", "ScoreRequest"),
            "/compare": post(
                "Score several explanations on the same texts and compare them (paired bootstrap, Holm)",
                "CompareRequest",
            ),
            "/explain": post("Write an explanation from activations", "ExplainRequest"),
            "/similarity": post(
                "Cosine similarity of an explanation with reference explanations (AdaCS)",
                "SimilarityRequest",
            ),
            "/health": {
                "get": {
                    "summary": "Liveness and configured backends",
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "secretHeader": {"type": "apiKey", "in": "header", "name": "X-Secret-Key"},
            },
        },
    }
