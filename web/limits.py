"""Per-client rate limiting with Flask-Limiter: `RATE_LIMIT` requests per client, shared by all routes.

- The limit is one string in Flask-Limiter's notation, e.g. "60/minute" or
  "1000/hour;60/minute"; empty (the default) turns limiting off.
- Counters live in this process's memory (`memory://`): with several gunicorn
  workers each worker counts on its own, so a client gets up to WEB_CONCURRENCY
  times the limit. Set `RATELIMIT_STORAGE_URL=redis://host:6379/0` to share them
  between workers and replicas (needs the `redis` package). If that storage
  cannot be reached, each process falls back to its own memory and logs it,
  rather than refusing or failing requests.
- The client is the holder of SERVER_KEY when the request carries the right one
  (header X-Secret-Key, `Authorization: Bearer`, or the body field "secret"),
  otherwise its address (after ProxyFix; an IPv6 address counts by its /64). A
  wrong secret does not buy a bucket of its own: otherwise every guess at the key
  would get a fresh allowance, and guessing the key would not be limited at all.
- /health and /metrics are never limited. Over the limit: 429 with our JSON error
  `{"error": ..., "code": "rate_limited"}` and `Retry-After` in whole seconds.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import time
import urllib.parse
from typing import Any, Callable

from flask import Flask, Response, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from limits.errors import ConfigurationError
from limits.storage import SCHEMES, MovingWindowSupport  # SCHEMES: scheme -> storage class

from runtime.settings import ConfigError, Settings
from web import auth

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
KEY_PREFIX = "neuron-interp"
log = logging.getLogger("neuron_interp.ratelimit")

# A dead Redis must cost a request milliseconds, not the client library's defaults.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def key_bucket(server_key: str) -> str:
    """The bucket of the clients that hold SERVER_KEY.

    Derived with a slow hash, once per process: the bucket name reaches the
    limiter's storage and its log lines, and must not make guessing the key cheap.
    """
    digest = hashlib.pbkdf2_hmac("sha256", server_key.encode("utf-8"), b"neuron-interp ratelimit", 100_000)
    return "key:" + digest.hex()[:16]


def address_bucket(address: str | None) -> str:
    if not address:
        return "addr:unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "addr:" + address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "addr:" + str(ip.ipv4_mapped)
        # One host usually holds a whole /64; counting addresses would let it rotate freely.
        return "addr:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "addr:" + str(ip)


def offered_secrets(max_body: int) -> list[str]:
    """The secrets a request offers, looked up the way server.py authenticates."""
    return auth.offered_secrets(request.headers, lambda: _small_json_body(max_body))


def _small_json_body(max_body: int) -> Any:
    """The request's JSON body if it is small enough to read here and names a secret; else None."""
    if request.method != "POST" or not request.is_json:
        return None
    length = request.content_length
    if length is None or length > max_body:
        return None  # unknown or too large: the view answers 413; do not read it here
    raw = request.get_data(cache=True)  # cached: the view reads the same bytes again
    if b'"secret"' not in raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def make_key_func(settings: Settings) -> Callable[[], str]:
    bucket = key_bucket(settings.server_key) if settings.server_key else ""

    def client_key() -> str:
        try:
            if settings.server_key and auth.secret_matches(
                offered_secrets(settings.max_content_length), settings.server_key
            ):
                return bucket
            return address_bucket(request.remote_addr)
        except Exception:  # a key function that raises would answer 500
            log.warning("rate-limit key fell back to the address", exc_info=True)
            try:
                return address_bucket(request.remote_addr)
            except Exception:
                return "addr:unknown"

    return client_key


def _strategy(storage_uri: str) -> str:
    """A moving window where the storage has one: no burst of twice the limit at a window's edge."""
    storage_class = SCHEMES.get(urllib.parse.urlparse(storage_uri).scheme)
    if storage_class is None:
        raise ConfigError(f"RATELIMIT_STORAGE_URL={storage_uri!r}: unknown storage scheme")
    return "moving-window" if issubclass(storage_class, MovingWindowSupport) else "fixed-window"


def retry_after(limiter: Limiter, exc: RateLimitExceeded) -> int:
    """Whole seconds until the breached limit lets this client in again (at least 1)."""
    window = exc.limit.limit.get_expiry()
    try:
        current = limiter.current_limit
        if current is not None:
            return max(1, min(window, math.ceil(current.reset_at - time.time())))
    except Exception:  # the storage went away between the check and now
        log.warning("could not read the rate-limit window", exc_info=True)
    return max(1, window)


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    limit = settings.rate_limit.strip()
    if not limit:
        app.extensions["ratelimit"] = None
        return None
    try:
        parse_many(limit)
    except ValueError:
        raise ConfigError(f"RATE_LIMIT={limit!r} is not a rate limit such as '60/minute'") from None
    storage_uri = settings.ratelimit_storage_url.strip() or "memory://"
    redis = storage_uri.startswith(("redis", "rediss"))
    limiter = Limiter(
        key_func=make_key_func(settings),
        application_limits=[limit],
        storage_uri=storage_uri,
        storage_options=dict(_REDIS_OPTIONS) if redis else {},
        strategy=_strategy(storage_uri),
        key_prefix=KEY_PREFIX,
        headers_enabled=False,  # it would put Retry-After on every answer; ours is on 429s only
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.request_filter(lambda: request.path in EXEMPT_PATHS)
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:  # e.g. redis:// without the redis package
        raise ConfigError(f"RATELIMIT_STORAGE_URL={storage_uri!r}: {exc}") from None
    app.extensions["ratelimit"] = limiter

    def too_many_requests(exc: RateLimitExceeded) -> Response:
        seconds = retry_after(limiter, exc)
        response = jsonify(
            {
                "error": f"rate limit exceeded ({exc.description}); retry in {seconds} s",
                "code": "rate_limited",
            }
        )
        response.status_code = 429
        response.headers["Retry-After"] = str(seconds)
        return response

    # Registered for the exception class with code 429, so Flask prefers it over
    # server.py's generic HTTPException handler.
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    return limiter
