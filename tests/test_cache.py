"""The SQLite cache of LLM answers: stable keys, bounded size, safe across threads and processes."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest

from llm.cache import NullCache, SQLiteCache, make_key, open_cache

PARTS = {
    "backend": "openai",
    "base_url": "http://127.0.0.1:8000/v1",
    "model": "m",
    "format": "batched/v1",
    "explanation": "fast animals",
    "tokens": ["the", " quick", " fox"],
}


def test_key_is_stable_and_order_free():
    reordered = dict(reversed(list(PARTS.items())))
    assert make_key(PARTS) == make_key(reordered)
    assert len(make_key(PARTS)) == 64
    assert make_key({**PARTS, "tokens": ["the", " quick", " fox "]}) != make_key(PARTS)
    assert make_key({**PARTS, "model": "other"}) != make_key(PARTS)
    assert make_key("already-a-key") == "already-a-key"


def test_round_trip_and_miss(tmp_path):
    cache = SQLiteCache(str(tmp_path / "c.sqlite3"))
    assert cache.get(PARTS) is None
    value = {"expected_activations": [0.0, 2.5, 10.0], "note": "ünïcode"}
    cache.put(PARTS, value)
    assert cache.get(PARTS) == value
    assert cache.get(make_key(PARTS)) == value  # a precomputed key works too
    cache.put(PARTS, {"expected_activations": [1.0]})
    assert cache.get(PARTS) == {"expected_activations": [1.0]}
    assert len(cache) == 1


def test_creates_its_folder_and_uses_wal(tmp_path):
    path = tmp_path / "nested" / "deeper" / "cache.sqlite3"
    cache = SQLiteCache(str(path))
    cache.put(PARTS, 1)
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bounded_evicting_the_oldest(tmp_path):
    cache = SQLiteCache(str(tmp_path / "c.sqlite3"), max_entries=5)
    for i in range(12):
        cache.put({"i": i}, i)
    assert len(cache) == 5
    assert [cache.get({"i": i}) for i in range(12)] == [None] * 7 + [7, 8, 9, 10, 11]


def test_a_second_instance_sees_the_same_file(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    SQLiteCache(path).put(PARTS, [1, 2])
    assert SQLiteCache(path).get(PARTS) == [1, 2]


def test_safe_across_threads(tmp_path):
    cache = SQLiteCache(str(tmp_path / "c.sqlite3"))
    errors = []

    def work(worker: int) -> None:
        try:
            for i in range(40):
                cache.put({"w": worker, "i": i}, [worker, i])
                assert cache.get({"w": worker, "i": i}) == [worker, i]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) == 8 * 40


def _write_from_process(path: str, worker: int) -> None:
    cache = SQLiteCache(path)
    for i in range(30):
        cache.put({"w": worker, "i": i}, worker * 100 + i)


def test_safe_across_processes(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    SQLiteCache(path)  # the file exists before the workers start, as under gunicorn
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_from_process, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    cache = SQLiteCache(path)
    assert len(cache) == 90
    assert cache.get({"w": 2, "i": 29}) == 229


def test_in_memory_database(tmp_path):
    cache = SQLiteCache(":memory:", max_entries=2)
    for i in range(3):
        cache.put({"i": i}, i)
    assert cache.get({"i": 0}) is None and cache.get({"i": 2}) == 2


def test_a_broken_file_is_a_miss_not_an_error(tmp_path):
    path = tmp_path / "c.sqlite3"
    cache = SQLiteCache(str(path))
    cache.put(PARTS, 1)
    for suffix in ("", "-wal", "-shm"):
        p = tmp_path / f"c.sqlite3{suffix}"
        if p.exists():
            p.unlink()
    path.write_bytes(b"this is not a database" * 100)
    assert cache.get(PARTS) is None
    cache.put(PARTS, 2)  # logged and skipped


def test_null_cache_and_open_cache(tmp_path):
    null = NullCache()
    null.put(PARTS, 1)
    assert null.get(PARTS) is None and len(null) == 0
    assert isinstance(open_cache(""), NullCache)
    assert isinstance(open_cache(str(tmp_path / "x.sqlite3"), 10), SQLiteCache)
    with pytest.raises(ValueError):
        SQLiteCache(str(tmp_path / "y.sqlite3"), max_entries=0)
