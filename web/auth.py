"""Where a request offers SERVER_KEY, and how the offers are compared with it.

The routes (server.py), the rate limiter's client key (ratelimit.py) and /metrics
(observability.py) all read the offers here, so they agree on where a key may be.
Any one place may carry it (API.md): a gateway that adds its own `Authorization`
header must not lock out a client that sends the key in the body. No Flask:
`headers` is any mapping with `.get`.
"""
from __future__ import annotations

import hmac
from typing import Any, Callable, Mapping


def offered_secrets(headers: Mapping[str, str], body: Callable[[], Any] | None = None) -> list[str]:
    """Every secret a request offers: the header `X-Secret-Key`, `Authorization: Bearer <key>`,
    and the JSON body's string field "secret".

    `body` returns the parsed body; without it (GET /metrics) only the headers count.
    """
    offers = []
    header = headers.get("X-Secret-Key")
    if header:
        offers.extend(_as_sent(header))
    authorization = headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer " and authorization[7:].strip():
        offers.extend(_as_sent(authorization[7:].strip()))
    if body is not None:
        data = body()
        secret = data.get("secret") if isinstance(data, dict) else None
        if isinstance(secret, str) and secret:
            offers.append(secret)
    return offers


def _as_sent(header: str) -> list[str]:
    """A header value as WSGI hands it over (its bytes read as latin-1), and as the client most
    likely wrote it (those bytes read as UTF-8), so a non-ASCII key works in a header too."""
    try:
        utf8 = header.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return [header]
    return [header] if utf8 == header else [header, utf8]


def secret_matches(offers: list[str], key: str) -> bool:
    """Whether any offer is `key`. Each is compared in constant time, and all of them are
    compared, so the time taken says nothing about which one was right.

    JSON may carry a lone surrogate ("\\ud800"): it is encoded as it is and never
    matches, rather than raising.
    """
    expected = key.encode("utf-8")
    matched = False
    for offer in offers:
        matched |= hmac.compare_digest(offer.encode("utf-8", "surrogatepass"), expected)
    return matched
