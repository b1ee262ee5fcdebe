"""A cache of LLM answers, so that an identical simulation is never paid twice.

Keys are built from a dict of the parts that decide an answer (backend, base URL,
model, format, explanation, tokens...): the sha256 of their canonical JSON, so the
same parts give the same key in every process and every run.

`SQLiteCache` is safe across threads and across gunicorn worker processes: each
call opens its own connection (nothing is shared across a fork), the database runs
in WAL mode so readers never block the writer, and a busy timeout absorbs the
short write locks of other workers. It is a cache: a failing disk or a lock held
too long turns into a miss or a skipped write, logged, never into a failed request.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import closing
from typing import Any, Mapping, Protocol

log = logging.getLogger(__name__)

MEMORY = ":memory:"


def make_key(parts: Mapping[str, Any] | str) -> str:
    """The stable cache key of `parts` (a string is taken as a key already made)."""
    if isinstance(parts, str):
        return parts
    canonical = json.dumps(
        parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    # surrogatepass: a token may hold a lone surrogate ("\ud800" in JSON); it still has one key.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class Cache(Protocol):
    def get(self, parts: Mapping[str, Any] | str) -> Any | None: ...

    def put(self, parts: Mapping[str, Any] | str, value: Any) -> None: ...


class NullCache:
    """The cache that remembers nothing (no cache path configured)."""

    def get(self, parts: Mapping[str, Any] | str) -> Any | None:
        return None

    def put(self, parts: Mapping[str, Any] | str, value: Any) -> None:
        return None

    def __len__(self) -> int:
        return 0

    def clear(self) -> None:
        return None

    def status(self) -> dict:
        return {"backend": "none", "status": "off"}


class SQLiteCache:
    """JSON values by key in one SQLite file, at most `max_entries`, the oldest evicted first."""

    def __init__(
        self,
        path: str,
        max_entries: int = 100_000,
        *,
        busy_timeout: float = 5.0,
        on_error: Any = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = path
        # Called as on_error("sqlite", operation) for each failed read or write (for /metrics).
        self.on_error = on_error
        self.errors = 0
        self.max_entries = max_entries
        self.busy_timeout = busy_timeout
        # An in-memory database lives and dies with its connection, so that one
        # case keeps a single shared connection behind a lock.
        self._memory: sqlite3.Connection | None = None
        self._memory_lock = threading.Lock()
        if path == MEMORY:
            self._memory = sqlite3.connect(MEMORY, check_same_thread=False, isolation_level=None)
        else:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
        self._init_schema()

    # -- public interface ---------------------------------------------------

    def get(self, parts: Mapping[str, Any] | str) -> Any | None:
        key = make_key(parts)
        try:
            row = self._run(lambda c: c.execute(
                "SELECT value FROM entries WHERE key = ?", (key,)
            ).fetchone())
        except sqlite3.Error as exc:
            log.warning("cache read failed (%s); treating as a miss", exc)
            self._report("get")
            return None
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            return None

    def put(self, parts: Mapping[str, Any] | str, value: Any) -> None:
        try:
            key = make_key(parts)
            payload = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:  # NaN, or not JSON at all: not cacheable
            log.warning("cache write skipped: value not JSON-serialisable (%s)", exc)
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # REPLACE gives the key a new id: a rewritten entry counts as new.
                conn.execute(
                    "INSERT OR REPLACE INTO entries (key, value, created) VALUES (?, ?, ?)",
                    (key, payload, time.time()),
                )
                # Ids only grow, so everything at or below (newest id - max) is
                # older than the newest max_entries: an O(log n) bound, no count.
                conn.execute(
                    "DELETE FROM entries WHERE id <= (SELECT MAX(id) FROM entries) - ?",
                    (self.max_entries,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            self._run(write)
        except sqlite3.Error as exc:
            log.warning("cache write failed (%s); answer not cached", exc)
            self._report("put")

    def status(self) -> dict:
        return {"backend": "sqlite", "status": "ok", "path": self.path, "errors": self.errors}

    def _report(self, operation: str) -> None:
        self.errors += 1
        if self.on_error is not None:
            try:
                self.on_error("sqlite", operation)
            except Exception:  # counting must never fail the request
                log.debug("cache error hook failed", exc_info=True)

    def __len__(self) -> int:
        return int(self._run(lambda c: c.execute("SELECT COUNT(*) FROM entries").fetchone()[0]))

    def clear(self) -> None:
        self._run(lambda c: c.execute("DELETE FROM entries"))

    # -- connections ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _run(self, fn: Any) -> Any:
        if self._memory is not None:
            with self._memory_lock:
                return fn(self._memory)
        with closing(self._connect()) as conn:
            return fn(conn)

    def _init_schema(self) -> None:
        def init(conn: sqlite3.Connection) -> None:
            if self._memory is None:
                # WAL is a property of the file: set once, every later connection uses it.
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " key TEXT NOT NULL UNIQUE,"
                " value TEXT NOT NULL,"
                " created REAL NOT NULL)"
            )

        self._run(init)


def open_cache(path: str, max_entries: int = 100_000) -> SQLiteCache | NullCache:
    """The configured cache: SQLite at `path`, or no cache when the path is empty."""
    if not path:
        return NullCache()
    return SQLiteCache(path, max_entries)
