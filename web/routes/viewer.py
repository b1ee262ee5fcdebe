"""The viewer: `GET /` (a static page, no build step), its assets, and the packaged examples.

The page talks to the service only through its public routes (/health, /score, /compare,
/explain), as any other client would. Everything it shows that came from a request or a
response is untrusted text: the page renders it with textContent, and the Content-Security-
Policy below forbids inline script, so a token such as `<img onerror=...>` stays text.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, jsonify

from web import examples
from web.errors import ApiError

STATIC = Path(__file__).resolve().parent.parent / "static"

bp = Blueprint("viewer", __name__, static_folder=str(STATIC), static_url_path="/viewer")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@bp.record_once
def _exempt_from_rate_limit(state) -> None:
    # A page load is a handful of static files and packaged data: only the routes that
    # do work (/score, /explain, ...) count against RATE_LIMIT.
    limiter = state.app.extensions.get("ratelimit")
    if limiter is not None:
        limiter.exempt(bp)


@bp.after_request
def _security_headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def page():
    response = bp.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/examples")
def example_list():
    return jsonify(examples.listing())


@bp.get("/examples/<example_id>")
def example(example_id: str):
    found = examples.body(example_id)
    if found is None:
        raise ApiError(404, "not_found", f"no example {example_id!r}; GET /examples lists them")
    return jsonify(found)

