"""Where a request offers SERVER_KEY, and how an offer is compared with it.

The routes (server.py), the rate limiter's client key (ratelimit.py) and /metrics
(observability.py) all read the offer here, so they agree on where it may be and
in which order. No Flask: `headers` is any mapping with `.get`.
"""
from __future__ import annotations

import hmac
from typing import Any, Callable, Mapping


def offered_secret(headers: Mapping[str, str], body: Callable[[], Any] | None = None) -> str | None:
    """The secret a request offers: the header `X-Secret-Key`, else `Authorization: Bearer <key>`,
    else the JSON body's string field "secret".

    `body` returns the parsed body; it is called only when no header offers a secret.
    Without it (GET /metrics) only the headers count.
    """
    header = headers.get("X-Secret-Key")
    if header:
        return header
    authorization = headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    if body is None:
        return None
    data = body()
    secret = data.get("secret") if isinstance(data, dict) else None
    return secret if isinstance(secret, str) and secret else None


def secret_matches(offered: str | None, key: str) -> bool:
    """Whether `offered` is `key`, compared in constant time.

    JSON may carry a lone surrogate ("\\ud800"): it is encoded as it is and never
    matches, rather than raising.
    """
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), key.encode("utf-8"))
