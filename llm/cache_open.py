"""Which cache of LLM answers a process uses, and what happens when it cannot have one.

`open_configured_cache` picks, in order: Redis when a `redis://` (or `rediss://`,
`unix://`) URL is given (one cache for every replica), SQLite at a path (one machine),
or no cache. A cache that cannot be opened (a path that is not a database, a
read-only place, a folder that is a regular file, a bad URL, the client library
missing) must not fail requests: it becomes `BrokenCache`, which misses every time,
is logged once, reported once to `on_error`, and says "degraded" in /health.

`CacheEvents` carries failures from the caches (the edge) to whoever counts them
(the HTTP layer's /metrics) without either importing the other.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from llm.cache import NullCache, SQLiteCache

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheEvents:
    """Failed cache operations as (backend, operation) pairs, handed to every subscriber.

    Events reported before anyone subscribed (a cache opened while the app is being
    built) are kept and handed to the first subscribers, so none is lost.
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[str, str], None]] = []
        self._early: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[str, str], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)
            early, self._early = self._early, []
        for backend, operation in early:
            self._call(fn, backend, operation)

    def report(self, backend: str, operation: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            if not subscribers:
                self._early.append((backend, operation))
        for fn in subscribers:
            self._call(fn, backend, operation)

    @staticmethod
    def _call(fn: Callable[[str, str], None], backend: str, operation: str) -> None:
        try:
            fn(backend, operation)
        except Exception:  # counting must never fail a request
            log.debug("cache event subscriber failed", exc_info=True)


class BrokenCache(NullCache):
    """The cache that could not be opened: every get a miss, every put skipped, and /health
    says why."""

    def __init__(self, backend: str, where: str, reason: str) -> None:
        self.backend = backend
        self.where = where
        self.reason = reason

    def status(self) -> dict:
        return {
            "backend": self.backend,
            "status": "degraded",
            "where": self.where,
            "error": f"could not be opened ({self.reason}); every request runs uncached",
        }


def open_configured_cache(
    *,
    url: str = "",
    path: str = "",
    max_entries: int = 100_000,
    ttl_seconds: int = 0,
    timeout: float = 0.25,
    on_error: Callable[[str, str], None] | None = None,
) -> Any:
    """The cache these settings ask for; never raises."""
    url = (url or "").strip()
    if url:
        from llm.cache_redis import RedisCache, describe_url

        try:
            if not url.startswith(REDIS_SCHEMES):
                raise ValueError("CACHE_URL must start with redis://, rediss:// or unix://")
            return RedisCache(url, ttl_seconds, timeout=timeout, on_error=on_error)
        except Exception as exc:
            where = describe_url(url) if "://" in url else "CACHE_URL"
            return _broken("redis", where, exc, on_error)
    if not path:
        return NullCache()
    try:
        return SQLiteCache(path, max_entries=max_entries, on_error=on_error)
    except Exception as exc:  # sqlite3.Error, OSError (a folder that is a file), ...
        return _broken("sqlite", path, exc, on_error)


def _broken(backend: str, where: str, exc: Exception, on_error: Callable[[str, str], None] | None) -> BrokenCache:
    reason = f"{type(exc).__name__}: {exc}"[:300]
    log.error("the %s cache at %s could not be opened (%s); continuing without a cache", backend, where, reason)
    if on_error is not None:
        try:
            on_error(backend, "open")
        except Exception:
            log.debug("cache error hook failed", exc_info=True)
    return BrokenCache(backend, where, reason)


def cache_status(cache: Any) -> dict:
    """What /health shows of any cache (one passed in by a test may not know its status)."""
    status = getattr(cache, "status", None)
    if callable(status):
        try:
            return status()
        except Exception as exc:
            return {"backend": type(cache).__name__, "status": "degraded", "error": type(exc).__name__}
    return {"backend": type(cache).__name__, "status": "ok"}
