"""The cache of LLM answers in Redis, shared by every worker of every replica.

Same interface as `llm.cache.SQLiteCache` (get/put by the parts that decide an
answer, values as JSON), same keys (`make_key`), under the prefix `neuron-interp:llm:`.

- Entries expire `ttl_seconds` after they were written (0: never); how much memory
  they may take is Redis's own business (`maxmemory` with `allkeys-lru`, as
  `scripts/stack` starts it), so this class keeps no count.
- It is a cache: Redis down, slow or refusing is a miss or a skipped write, never a
  failed request. Every call waits at most `timeout` seconds (connect and reply, no
  retries), and after a failure Redis is left alone for `pause` seconds, so a dead
  Redis costs one short wait per process and pause, not one per text.
- Each failure is reported to `on_error(backend, operation)` (the runtime counts it in
  /metrics); going down and coming back are logged once each, not per call.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping

from llm.cache import make_key

log = logging.getLogger(__name__)

KEY_PREFIX = "neuron-interp:llm:"
BACKEND = "redis"

ErrorHook = Callable[[str, str], None]


def describe_url(url: str) -> str:
    """`redis://host:port/db` without user, password or query: safe for logs and /health."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}{port}{parsed.path or ''}"


class RedisCache:
    def __init__(
        self,
        url: str,
        ttl_seconds: int = 7 * 24 * 3600,
        *,
        timeout: float = 0.25,
        pause: float = 5.0,
        on_error: ErrorHook | None = None,
        client: Any = None,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be 0 (never expire) or more")
        self.url = describe_url(url)
        self.ttl_seconds = int(ttl_seconds)
        self.pause = pause
        self.on_error = on_error
        self.errors = 0
        self.last_error: str | None = None
        self._down_until = 0.0
        self._checked_at = 0.0
        self._lock = threading.Lock()
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries: the caller would rather have a miss now than an answer later.
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        self._client = client

    # -- public interface ---------------------------------------------------

    def get(self, parts: Mapping[str, Any] | str) -> Any | None:
        if self._resting():
            return None
        try:
            raw = self._client.get(KEY_PREFIX + make_key(parts))
        except Exception as exc:  # redis errors, timeouts, a closed socket: a miss
            self._failed("get", exc)
            return None
        self._succeeded()
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def put(self, parts: Mapping[str, Any] | str, value: Any) -> None:
        try:
            key = KEY_PREFIX + make_key(parts)
            payload = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:  # NaN, or not JSON at all: not cacheable
            log.warning("cache write skipped: value not JSON-serialisable (%s)", exc)
            return
        if self._resting():
            return
        try:
            self._client.set(key, payload, ex=self.ttl_seconds or None)
        except Exception as exc:
            self._failed("put", exc)
            return
        self._succeeded()

    def status(self) -> dict:
        """For /health: reachable or not, checked at most every few seconds (a short PING)."""
        now = time.monotonic()
        if not self._resting() and now - self._checked_at > self.pause:
            try:
                self._client.ping()
            except Exception as exc:
                self._failed("ping", exc)
            else:
                self._succeeded()
        return {
            "backend": BACKEND,
            "status": "degraded" if self._resting() else "ok",
            "url": self.url,
            "ttl_seconds": self.ttl_seconds,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def __len__(self) -> int:
        count = 0
        for _ in self._client.scan_iter(match=KEY_PREFIX + "*", count=1000):
            count += 1
        return count

    def clear(self) -> None:
        keys = list(self._client.scan_iter(match=KEY_PREFIX + "*", count=1000))
        if keys:
            self._client.delete(*keys)

    # -- failure handling -----------------------------------------------------

    def _resting(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            was_up = self._down_until == 0.0
            self.errors += 1
            self.last_error = reason[:300]
            self._down_until = time.monotonic() + self.pause
            self._checked_at = time.monotonic()
        if was_up:
            log.warning(
                "cache %s unreachable on %s (%s); answering as misses, next try in %g s",
                self.url, operation, reason, self.pause,
            )
        if self.on_error is not None:
            try:
                self.on_error(BACKEND, operation)
            except Exception:  # counting must never fail the request
                log.debug("cache error hook failed", exc_info=True)

    def _succeeded(self) -> None:
        self._checked_at = time.monotonic()
        if self._down_until:
            with self._lock:
                recovered = self._down_until != 0.0
                self._down_until = 0.0
            if recovered:
                log.info("cache %s reachable again", self.url)
