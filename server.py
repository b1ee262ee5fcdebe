"""The HTTP layer: the only Flask code. `create_app()` for tests, `server:app` for gunicorn."""
from __future__ import annotations

import hmac
import logging
import math as pymath
import os
import time
from typing import Any

from flask import Flask, Request, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import api
import observability
import proxy
import ratelimit
from config import OFFLINE, Settings
from llm.errors import BackendUnavailable, DeadlineExceeded, UpstreamError
from runtime import Runtime
from explainer.best_of_n import explain_best_of_n
from explainer.errors import ExplainerError
from explainer.explain import explain
from explainer.search.service import explain_by_search
from llm.usage import Usage
from scorer.records import ActivationRecord
from scorer.scorers import SCORER_NAMES, SIMULATION, build_scorer, default_judge
from scorer.scorers.base import ScorerInputError
from scorer.scorers.simulation import score_explanation
from scorer.similarity import explanation_similarity
from scorer.simulators import SIMULATOR_NAMES

VERSION = "0.1.0"
log = logging.getLogger("neuron_interp")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _finite(value: Any) -> Any:
    """Replace non-finite floats by None, recursively: every body is valid RFC 8259 JSON."""
    if isinstance(value, float):
        return value if pymath.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(_finite(obj), **kwargs)


def create_app(config: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = config or Settings.from_env()
    runtime = runtime or Runtime(settings)

    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["runtime"] = runtime
    proxy.init_app(app, settings)
    observability.init_app(app, settings)
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
        offered = _offered_secret(req, body)
        expected = settings.server_key.encode("utf-8")
        if offered is None or not hmac.compare_digest(
            offered.encode("utf-8", "surrogatepass"), expected
        ):
            raise api.ApiError(
                401,
                "unauthorized",
                "missing or wrong secret: send it as the body field 'secret', "
                "the header 'X-Secret-Key', or 'Authorization: Bearer <key>'",
            )

    def deadline() -> float:
        return g.started + settings.request_timeout

    @app.before_request
    def _start_clock() -> None:
        g.started = time.monotonic()

    # -- routes -------------------------------------------------------------

    @app.post("/score")
    def score():
        body = json_body(request)
        authenticate(request, body)
        req = api.validate(api.ScoreRequest, body)
        api.check_limits(req.activations, settings.max_texts, settings.max_tokens_per_text)
        if len(req.explanation) > settings.max_explanation_chars:
            raise api.too_large(
                f"explanation: {len(req.explanation)} characters; the limit is "
                f"{settings.max_explanation_chars}"
            )
        if req.scorer != SIMULATION:
            return score_with_classifier(req)
        simulator = runtime.simulator(req.simulator, req.model)
        records = [ActivationRecord(list(t.tokens), list(t.values)) for t in req.activations]
        result = score_explanation(req.explanation, records, simulator, deadline=deadline())
        g.log_fields.update(simulator=simulator.name, model=simulator.model, usage=result.usage.to_dict(), failures=len(result.failures))
        return jsonify(
            {
                "score": result.score,
                "simulations": result.simulations_to_dicts(),
                "scorer": "simulation",
                "metric": result.metric,
                "simulator": {
                    "name": simulator.name,
                    "model": simulator.model,
                    "offline": simulator.name == OFFLINE,
                },
                "texts_scored": sum(s is not None for s in result.scored),
                "failures": [{"index": f.index, "reason": f.reason} for f in result.failures],
                "usage": result.usage.to_dict(),
                "elapsed_ms": round((time.monotonic() - g.started) * 1000, 1),
            }
        )

    def score_with_classifier(req: api.ScoreRequest):
        """/score with detection, fuzzing or embedding: Neuronpedia's keys, `simulations` empty."""
        options = {
            name: getattr(req, name)
            for name in ("model", "judge", "activation_threshold", "batch_size", "random_fraction", "seed")
        }
        scorer = build_scorer(req.scorer, runtime, options)
        records = [ActivationRecord(list(t.tokens), list(t.values)) for t in req.activations]
        try:
            result = scorer.score(req.explanation, records, deadline=deadline())
        except ScorerInputError as exc:
            raise api.invalid(str(exc)) from None
        g.log_fields.update(
            scorer=scorer.name,
            judge=scorer.scored_by["name"],
            model=scorer.scored_by["model"],
            usage=result.usage.to_dict(),
            failures=len(result.failures),
        )
        details = dict(result.details)
        return jsonify(
            {
                "score": result.score,
                "simulations": [],
                "scorer": scorer.name,
                "metric": result.metric,
                "judge": scorer.scored_by,
                "offline": scorer.scored_by["offline"],
                "texts_scored": details.pop("texts_scored", None),
                "texts": result.per_text,
                "failures": [{"index": f.index, "reason": f.reason} for f in result.failures],
                "usage": result.usage.to_dict(),
                "details": details,
                "elapsed_ms": round((time.monotonic() - g.started) * 1000, 1),
            }
        )

    @app.post("/similarity")
    def similarity():
        body = json_body(request)
        authenticate(request, body)
        req = api.validate(api.SimilarityRequest, body)
        if len(req.references) > settings.max_texts:
            raise api.too_large(f"references: {len(req.references)}; the limit is {settings.max_texts}")
        for where, text in [("explanation", req.explanation)] + [
            (f"references[{i}]", r) for i, r in enumerate(req.references)
        ]:
            if len(text) > settings.max_explanation_chars:
                raise api.too_large(
                    f"{where}: {len(text)} characters; the limit is {settings.max_explanation_chars}"
                )
        embedder = runtime.text_embedder(req.model)
        result = explanation_similarity(req.explanation, req.references, embedder, deadline=deadline())
        g.log_fields.update(embedder=embedder.name, usage=result.usage.to_dict())
        return jsonify(
            {
                "similarities": result.similarities,
                "mean": result.mean,
                "metric": "cosine",
                "embedder": {"name": embedder.name, "model": embedder.model, "offline": embedder.offline},
                "offline": embedder.offline,
                "usage": result.usage.to_dict(),
                "elapsed_ms": round((time.monotonic() - g.started) * 1000, 1),
            }
        )

    @app.post("/explain")
    def explain_view():
        body = json_body(request)
        authenticate(request, body)
        req = api.validate(api.ExplainRequest, body)
        api.check_limits(
            req.activations + req.random_activations, settings.max_texts, settings.max_tokens_per_text
        )
        if req.strategy == "search":
            try:
                payload = explain_by_search(req, runtime, deadline=deadline())
            except ExplainerError as exc:
                raise api.invalid(str(exc)) from None
            g.log_fields.update(strategy="search", usage=payload.get("usage"), rounds=payload.get("rounds"))
            payload["elapsed_ms"] = round((time.monotonic() - g.started) * 1000, 1)
            return jsonify(payload)
        backend = runtime.explainer_backend(req.explainer, required=not req.dry_run)
        records = [ActivationRecord(list(t.tokens), list(t.values)) for t in req.activations]
        options = dict(
            style=req.style,
            backend=backend,
            model=(req.model or settings.explainer_model) if backend is not None else None,
            n=req.n,
            temperature=req.temperature,
            threshold=req.threshold,
            max_activation=req.max_activation,
            token_budget=req.max_prompt_tokens,
            deadline=deadline(),
            dry_run=req.dry_run,
        )
        extra: dict[str, Any] = {}
        try:
            if req.score and not req.dry_run:
                simulator = runtime.simulator()
                scoring = Usage()

                def simulate_and_score(explanation, heldout):
                    nonlocal scoring
                    try:
                        scored = score_explanation(explanation, heldout, simulator, deadline=deadline())
                    except UpstreamError:
                        return None
                    scoring = scoring + scored.usage
                    return scored.score

                random = [ActivationRecord(list(t.tokens), list(t.values)) for t in req.random_activations]
                best = explain_best_of_n(
                    records, simulate_and_score, random_records=random, top_k=req.top_k, **options
                )
                result = best.result
                extra["candidates"] = [
                    {"explanation": c.explanation, "score": c.score} for c in best.ranked
                ]
                extra["scoring"] = {
                    "simulator": {"name": simulator.name, "model": simulator.model},
                    "heldout_texts": best.heldout_texts,
                    "usage": scoring.to_dict(),
                }
            else:
                result = explain(records, top_k=req.top_k, **options)
                extra["candidates"] = [{"explanation": c, "score": None} for c in result.candidates]
        except ExplainerError as exc:
            raise api.invalid(str(exc)) from None
        payload = result.to_dict()
        if not req.dry_run:
            payload.pop("messages")
        payload.pop("candidates")
        payload.update(extra)
        payload["offline"] = result.backend == OFFLINE
        payload["strategy"] = "single"
        payload["elapsed_ms"] = round((time.monotonic() - g.started) * 1000, 1)
        return jsonify(payload)

    @app.get("/health")
    def health():
        default = settings.default_simulator
        return jsonify(
            {
                "status": "ok",
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


def _offered_secret(req: Request, body: dict) -> str | None:
    header = req.headers.get("X-Secret-Key")
    if header:
        return header
    auth = req.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    secret = body.get("secret")
    return secret if isinstance(secret, str) and secret else None


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
