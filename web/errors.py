"""Every error the service answers: one table of statuses and codes, and the handlers.

Domain errors (scorer/, explainer/, llm/) know nothing of HTTP; this module maps each
kind to its status and stable `code`, and the same table feeds /openapi.json.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from explainer.errors import ExplainerError
from llm.errors import BackendUnavailable, CapabilityMissing, DeadlineExceeded, UpstreamError
from scorer.errors import ScorerInputError
from web import observability

log = logging.getLogger("neuron_interp")

# status -> the code every error of that status carries (API.md).
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "backend_unavailable",
    504: "upstream_timeout",
}

# Domain errors that are the request's fault: 400 with the domain's own message.
_INVALID = (ExplainerError, ScorerInputError, CapabilityMissing)
# Backend failures: (status, default message).
_UPSTREAM = {
    UpstreamError: 502,
    BackendUnavailable: 503,
    DeadlineExceeded: 504,
}


class ApiError(Exception):
    """An error with its HTTP status and stable machine-readable code."""

    def __init__(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "http_error")
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": self.message, "code": self.code}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    # An upstream message may quote a key back: no secret leaves in a body either.
    response = jsonify({"error": observability.redact(message), "code": code})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _http_message(exc: HTTPException, max_content_length: int) -> str:
    status = exc.code or 500
    if status == 413:
        return f"the body is larger than MAX_CONTENT_LENGTH ({max_content_length} bytes)"
    if status == 404:
        return f"no route {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return exc.description or exc.name


def init_app(app: Flask, max_content_length: int) -> None:
    """Every exception becomes a JSON error body with its status and code."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    def _invalid(exc: Exception):
        return error_response(400, CODES[400], str(exc))

    for kind in _INVALID:
        app.register_error_handler(kind, _invalid)

    for kind, status in _UPSTREAM.items():

        def handler(exc: Exception, status: int = status):
            log.warning("%s on %s: %s", CODES[status], request.path, exc)
            message = str(exc) or ("the request's deadline passed" if status == 504 else CODES[status])
            return error_response(status, CODES[status], message)

        app.register_error_handler(kind, handler)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        headers = {}
        if status == 405:
            allow = dict(exc.get_headers()).get("Allow")
            if allow:
                headers["Allow"] = allow
        return error_response(
            status, CODES.get(status, "http_error"), _http_message(exc, max_content_length), headers
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        return error_response(500, CODES[500], "internal error; see the server log")
