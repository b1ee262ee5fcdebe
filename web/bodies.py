"""Request bodies in, response bodies out: strict JSON, the secret, the models, the limits.

Every view reads its request through `validated(Model)`: JSON first (415, 400, 413), then
the secret (401), then the fields (400 naming the field). Every body the service writes
goes through `StrictJSONProvider`: non-finite floats become null, never NaN.
"""
from __future__ import annotations

import difflib
import json
import math
import time
from typing import Any, TypeVar

from flask import current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from runtime.settings import Settings
from web import auth
from web.errors import ApiError, invalid, too_large

M = TypeVar("M", bound=BaseModel)


def finite_json(value: Any) -> Any:
    """Replace non-finite floats by None, recursively: every JSON written is valid RFC 8259."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(finite_json(obj), **kwargs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def parse_json_body(raw: bytes) -> Any:
    """Strict RFC 8259 parsing: UTF-8, no NaN/Infinity, bounded nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise invalid("the body is empty; send a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise invalid("the JSON body is nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's guard against huge integers
            raise invalid("malformed JSON: a number has more digits than the service reads") from None
        raise invalid(f"malformed JSON: {exc}") from None


def field_path(loc: tuple) -> str:
    """('activations', 1, 'values', 3) -> 'activations[1].values[3]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = field_path(tuple(first["loc"]))
        message = first["msg"]
        if first["type"] in ("float_type", "finite_number"):
            message = "must be a finite number"
        elif first["type"] == "missing":
            message = "is required"
        elif first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise invalid(f"{where}: {message}{suffix}") from None


def settings() -> Settings:
    return current_app.extensions["settings"]


def json_body() -> dict:
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with the header 'Content-Type: application/json'",
        )
    limit = settings().max_content_length
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    raw = request.get_data(cache=True)
    # A chunked body (no Content-Length) is read up to one byte past the limit (the app's
    # MAX_CONTENT_LENGTH is limit + 1): one that gets there is too large, not a truncated
    # body to parse as malformed JSON; one of exactly the limit is accepted, as with a length.
    if length is None and len(raw) > limit:
        raise RequestEntityTooLarge()
    data = parse_json_body(raw)
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return data


def authenticate(body: dict) -> None:
    key = settings().server_key
    if not key:
        return
    if not auth.secret_matches(auth.offered_secrets(request.headers, lambda: body), key):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong secret: send it as the body field 'secret', "
            "the header 'X-Secret-Key', or 'Authorization: Bearer <key>'",
        )


# Keys the reference format carries that the service knows and ignores: never warned about.
KNOWN_EXTRA_KEYS = frozenset({"secret", "dataclass_name"})


def unknown_keys(model: type[BaseModel], body: dict) -> list[str]:
    """A warning for each top-level key the model does not know (a misspelt option would
    otherwise silently take its default), with the nearest known name when there is one."""
    known = set(model.model_fields)
    warnings = []
    for key in body:
        if key in known or key in KNOWN_EXTRA_KEYS:
            continue
        near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        warnings.append(f"unknown key {str(key)[:80]!r} ignored{hint}")
    return warnings


def validated(model: type[M]) -> M:
    """The request's body as `model`: JSON first, then the secret, then the fields. Keys the
    model does not know are named in the answer's `warnings`."""
    body = json_body()
    authenticate(body)
    request_model = validate(model, body)
    g.warnings = unknown_keys(model, body)
    return request_model


def check_texts(**fields: list) -> None:
    """413 when the texts of all `fields` together are too many, or one text too long;
    the message names the field as the caller sent it (`random_activations[0].tokens`)."""
    s = settings()
    total = sum(len(texts) for texts in fields.values())
    if total > s.max_texts:
        names = " + ".join(fields)
        raise too_large(f"{names}: {total} texts; the limit is {s.max_texts}")
    for name, texts in fields.items():
        for i, text in enumerate(texts):
            if len(text.tokens) > s.max_tokens_per_text:
                raise too_large(
                    f"{name}[{i}].tokens: {len(text.tokens)} tokens; the limit is {s.max_tokens_per_text}"
                )


def check_length(where: str, text: str) -> None:
    limit = settings().max_explanation_chars
    if len(text) > limit:
        raise too_large(f"{where}: {len(text)} characters; the limit is {limit}")


def deadline() -> float:
    """When this request's work must be done (REQUEST_TIMEOUT after it arrived)."""
    return g.started + settings().request_timeout


def respond(payload: dict):
    """The payload as JSON, with the time the request took so far."""
    warnings = g.get("warnings")
    if warnings:
        payload["warnings"] = warnings
    payload["elapsed_ms"] = round((time.monotonic() - g.started) * 1000, 1)
    return jsonify(payload)


def start_clock() -> None:
    g.started = time.monotonic()
