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


def openapi_document(version: str) -> dict:
    """The contract, generated from the request models above."""
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ScoreRequest, CompareRequest, ExplainRequest, SimilarityRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
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
