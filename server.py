"""The HTTP layer: the only Flask code. `create_app()` for tests, `server:app` for gunicorn."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Flask, Request, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import api
import auth
import observability
import proxy
import ratelimit
import slowclient
from config import OFFLINE, Settings
from llm.errors import BackendUnavailable, DeadlineExceeded, UpstreamError
from runtime import Runtime
from explainer.errors import ExplainerError
from explainer.search.service import explain_by_search
from explainer.service import explain_single
from scorer import service as scoring
from scorer.scorers import SCORER_NAMES, SIMULATION, default_judge
from scorer.scorers.base import ScorerInputError
from scorer.simulators import SIMULATOR_NAMES

VERSION = "0.1.0"
log = logging.getLogger("neuron_interp")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(api.finite_json(obj), **kwargs)


def create_app(config: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = config or Settings.from_env()
    runtime = runtime or Runtime(settings)

    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["runtime"] = runtime
    slowclient.init_app(app, settings)
    proxy.init_app(app, settings)
    observability.init_app(app, settings)
    runtime.cache_events.subscribe(app.extensions["metrics"].cache_error)
    ratelimit.init_app(app, settings)
    logging.basicConfig(level=settings.log_level.upper())

    # -- request helpers ----------------------------------------------------

    def json_body(req: Request) -> dict:
        if not req.is_json:
            raise api.ApiError(
                415,
                "unsupported_media_type",
                "send the body as JSON with the header 'Content-Type: application/json'",
            )
        limit = settings.max_content_length
        length = req.content_length
        if length is not None and length > limit:
            raise RequestEntityTooLarge()
        raw = req.get_data(cache=True)
        # A chunked body (no Content-Length) is cut at the limit by werkzeug: one that
        # reaches it is too large, not a truncated body to parse as malformed JSON.
        if length is None and len(raw) >= limit:
            raise RequestEntityTooLarge()
        data = api.parse_json_body(raw)
        if not isinstance(data, dict):
            raise api.invalid("the body must be a JSON object")
        return data

    def authenticate(req: Request, body: dict) -> None:
        if not settings.server_key:
            return
        if not auth.secret_matches(auth.offered_secrets(req.headers, lambda: body), settings.server_key):
            raise api.ApiError(
                401,
                "unauthorized",
                "missing or wrong secret: send it as the body field 'secret', "
                "the header 'X-Secret-Key', or 'Authorization: Bearer <key>'",
            )

    def validated(model: type[BaseModel]) -> Any:
        """The request's body as `model`: JSON first, then the secret, then the fields."""
        body = json_body(request)
        authenticate(request, body)
        return api.validate(model, body)

    def check_length(where: str, text: str) -> None:
        if len(text) > settings.max_explanation_chars:
            raise api.too_large(
                f"{where}: {len(text)} characters; the limit is {settings.max_explanation_chars}"
            )

    def deadline() -> float:
        return g.started + settings.request_timeout

    def respond(payload: dict):
        """The payload as JSON, with the time the request took so far."""
        payload["elapsed_ms"] = round((time.monotonic() - g.started) * 1000, 1)
        return jsonify(payload)

    @app.before_request
    def _start_clock() -> None:
        g.started = time.monotonic()

    # -- routes -------------------------------------------------------------

    @app.post("/score")
    def score():
        req = validated(api.ScoreRequest)
        api.check_limits(settings.max_texts, settings.max_tokens_per_text, activations=req.activations)
        check_length("explanation", req.explanation)
        score_with = scoring.score_by_simulation if req.scorer == SIMULATION else scoring.score_by_classifier
        try:
            payload = score_with(req, runtime, deadline=deadline())
        except ScorerInputError as exc:
            raise api.invalid(str(exc)) from None
        g.log_fields.update(_score_log_fields(payload))
        return respond(payload)

    @app.post("/similarity")
    def similarity():
        req = validated(api.SimilarityRequest)
        if len(req.references) > settings.max_texts:
            raise api.too_large(f"references: {len(req.references)}; the limit is {settings.max_texts}")
        check_length("explanation", req.explanation)
        for i, reference in enumerate(req.references):
            check_length(f"references[{i}]", reference)
        payload = scoring.similarity(req, runtime, deadline=deadline())
        g.log_fields.update(embedder=payload["embedder"]["name"], usage=payload["usage"])
        return respond(payload)

    @app.post("/explain")
    def explain_view():
        req = validated(api.ExplainRequest)
        api.check_limits(
            settings.max_texts,
            settings.max_tokens_per_text,
            activations=req.activations,
            random_activations=req.random_activations,
        )
        explain_with = explain_by_search if req.strategy == "search" else explain_single
        try:
            payload = explain_with(req, runtime, deadline=deadline())
        except ExplainerError as exc:
            raise api.invalid(str(exc)) from None
        g.log_fields.update(strategy=req.strategy, model=payload.get("model"), usage=payload.get("usage"))
        if "rounds" in payload:
            g.log_fields["rounds"] = payload["rounds"]
        return respond(payload)

    @app.get("/health")
    def health():
        default = settings.default_simulator
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
                    "model": None if default == OFFLINE else settings.simulator_model,
                },
                "scorers": {
                    "available": list(SCORER_NAMES),
                    "default_judge": default_judge(runtime),
                    "embedding_backend": settings.embedding_backend or "local",
                    "embedding_model": settings.embedding_model
                    if settings.embedding_backend == "openai"
                    else None,
                },
                "explainer": {
                    "default_backend": settings.default_explainer_backend,
                    "model": None
                    if settings.default_explainer_backend == OFFLINE
                    else settings.explainer_model,
                },
                **settings.public_summary(),
            }
        )

    @app.get("/openapi.json")
    def openapi():
        return jsonify(api.openapi_document(VERSION))

    # -- errors -------------------------------------------------------------

    def error(status: int, code: str, message: str, headers: dict | None = None):
        # An upstream message may quote a key back: no secret leaves in a body either.
        response = jsonify({"error": observability.redact(message), "code": code})
        response.status_code = status
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    @app.errorhandler(api.ApiError)
    def _api_error(exc: api.ApiError):
        return error(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(UpstreamError)
    def _upstream(exc: UpstreamError):
        log.warning("upstream error on %s: %s", request.path, exc)
        return error(502, "upstream_error", str(exc))

    @app.errorhandler(BackendUnavailable)
    def _unavailable(exc: BackendUnavailable):
        log.warning("backend unavailable on %s: %s", request.path, exc)
        return error(503, "backend_unavailable", str(exc))

    @app.errorhandler(DeadlineExceeded)
    def _timeout(exc: DeadlineExceeded):
        log.warning("deadline passed on %s: %s", request.path, exc)
        return error(504, "upstream_timeout", str(exc) or "the request's deadline passed")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            message = f"the body is larger than MAX_CONTENT_LENGTH ({settings.max_content_length} bytes)"
        elif status == 404:
            message = f"no route {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        else:
            message = exc.description or exc.name
        headers = {}
        if status == 405:
            allow = dict(exc.get_headers()).get("Allow")
            if allow:
                headers["Allow"] = allow
        return error(status, _HTTP_CODES.get(status, "http_error"), message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        return error(500, "internal_error", "internal error; see the server log")

    return app


def _score_log_fields(payload: dict) -> dict:
    """What the access log and /metrics record of a /score answer."""
    if payload["scorer"] == SIMULATION:
        scored_by = payload["simulator"]
        fields = {"simulator": scored_by["name"]}
    else:
        scored_by = payload["judge"]
        fields = {"scorer": payload["scorer"], "judge": scored_by["name"]}
    return {**fields, "model": scored_by["model"], "usage": payload["usage"], "failures": len(payload["failures"])}


def __getattr__(name: str):
    # Module-level lazy attribute (PEP 562): importing `server` in tests does not
    # read the environment; gunicorn's `server:app` builds the app once.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)


if __name__ == "__main__":
    create_app().run(
        host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000"))
    )
