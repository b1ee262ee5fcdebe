"""One cache for every replica (Redis), and a cache that breaks is a miss, never a failed request."""
from __future__ import annotations

import logging
import os
import signal
import time

import pytest
import redis

from llm.cache import make_key
from llm.cache_open import BrokenCache, CacheEvents, open_configured_cache
from llm.cache_redis import KEY_PREFIX, RedisCache, describe_url
from tests.redis_server import RedisServer, free_port
from tests.test_api_llm import ANIMALS, API_KEY, stub  # noqa: F401  (the stub fixture)
from tests.test_api_score import strict_json

PARTS = {"backend": "openai", "model": "m", "explanation": "fast animals", "tokens": ["the", " fox"]}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url




# -- RedisCache -----------------------------------------------------------------


def test_round_trip_with_expiry(redis_url):
    cache = RedisCache(redis_url, ttl_seconds=3600)
    assert cache.get(PARTS) is None
    value = {"expected_activations": [0.0, 2.5], "note": "ünïcode"}
    cache.put(PARTS, value)
    assert cache.get(PARTS) == value
    assert cache.get(make_key(PARTS)) == value
    raw = redis.Redis.from_url(redis_url)
    assert 3500 < raw.ttl(KEY_PREFIX + make_key(PARTS)) <= 3600
    assert len(cache) == 1
    cache.clear()
    assert cache.get(PARTS) is None


def test_ttl_zero_keeps_entries(redis_url):
    cache = RedisCache(redis_url, ttl_seconds=0)
    cache.put(PARTS, 1)
    assert redis.Redis.from_url(redis_url).ttl(KEY_PREFIX + make_key(PARTS)) == -1  # no expiry


def test_two_processes_share_one_cache(redis_url):
    # Two instances stand for two replicas: what one wrote, the other reads.
    RedisCache(redis_url).put(PARTS, {"v": 1})
    assert RedisCache(redis_url).get(PARTS) == {"v": 1}


def test_values_that_are_not_json_are_skipped(redis_url):
    cache = RedisCache(redis_url)
    cache.put(PARTS, float("nan"))
    assert cache.get(PARTS) is None


def test_a_dead_redis_is_a_miss_counted_and_logged_once(caplog):
    events = []
    cache = RedisCache(f"redis://:hunter2@127.0.0.1:{free_port()}/0", pause=60,
                       on_error=lambda b, op: events.append((b, op)))
    with caplog.at_level(logging.WARNING, logger="llm.cache_redis"):
        for _ in range(20):
            assert cache.get(PARTS) is None
            cache.put(PARTS, 1)
    # One real failure, then Redis is left alone for `pause` seconds.
    assert events == [("redis", "get")]
    warnings = [r for r in caplog.records if r.name == "llm.cache_redis"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    status = cache.status()
    assert status["status"] == "degraded" and status["errors"] == 1
    assert "hunter2" not in str(status) and "hunter2" not in caplog.text


class _Counting:
    """The real Redis client, counting the calls that reach it."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, 0

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)

        return call


def test_a_hung_redis_costs_one_short_wait_then_none(redis_server, redis_url):
    cache = RedisCache(redis_url, timeout=0.2, pause=0.5)
    cache.put(PARTS, 1)
    cache._client = counting = _Counting(cache._client)
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        results = [cache.get(PARTS) for _ in range(50)]
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    assert results == [None] * 50
    # One call timed out; the other 49 did not wait on Redis at all (it is left alone for `pause`).
    assert counting.calls == 1 and cache.errors == 1
    time.sleep(0.6)
    assert cache.get(PARTS) == 1  # back once Redis answers again
    assert cache.status()["status"] == "ok"


def test_describe_url_hides_credentials():
    assert describe_url("redis://user:secret@10.0.0.1:6380/2?ssl=1") == "redis://10.0.0.1:6380/2"


# -- opening the configured cache ------------------------------------------------


def test_open_prefers_the_url(redis_url, tmp_path):
    cache = open_configured_cache(url=redis_url, path=str(tmp_path / "c.sqlite3"), ttl_seconds=10)
    assert isinstance(cache, RedisCache)
    assert not (tmp_path / "c.sqlite3").exists()


def test_a_bad_url_is_a_broken_cache_not_an_exception():
    events = []
    cache = open_configured_cache(url="http://nope", on_error=lambda b, op: events.append((b, op)))
    assert isinstance(cache, BrokenCache) and events == [("redis", "open")]
    assert cache.get(PARTS) is None and cache.status()["status"] == "degraded"


def test_events_before_a_subscriber_are_kept():
    events = CacheEvents()
    events.report("sqlite", "open")
    seen = []
    events.subscribe(lambda b, op: seen.append((b, op)))
    events.report("sqlite", "get")
    assert seen == [("sqlite", "open"), ("sqlite", "get")]


def _not_a_database(tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    return str(path)


def _under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return str(tmp_path / "file" / "c.sqlite3")


def _in_a_folder_nobody_may_create(tmp_path):
    return "/proc/neuron-interp-cache/c.sqlite3"  # /proc refuses new entries, even to root


def _read_only_database(tmp_path):
    if os.geteuid() == 0:
        # Root ignores file modes, but not a read-only file system: /proc's files refuse writes to anyone.
        return "/proc/self/cmdline"
    folder = tmp_path / "ro"
    folder.mkdir()
    open_configured_cache(path=str(folder / "c.sqlite3"))  # a real, empty database...
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)  # ...that may no longer be written, nor its WAL files created
    return str(folder / "c.sqlite3")


@pytest.mark.parametrize(
    "make_path", [_not_a_database, _under_a_regular_file, _in_a_folder_nobody_may_create, _read_only_database],
    ids=["not-a-database", "under-a-file", "unwritable-folder", "read-only"],
)
def test_an_unusable_cache_at_start_up_is_a_miss(make_client, stub, tmp_path, caplog, make_path):  # noqa: F811
    path = make_path(tmp_path)
    client = make_client(
        openai_base_url=stub.base_url, openai_api_key=API_KEY, simulator_model="stub-model",
        llm_max_retries=1, request_timeout=10.0, cache_path=path,
    )
    with caplog.at_level(logging.ERROR, logger="llm.cache_open"):
        answers = [client.post("/score", json=ANIMALS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(strict_json(a)["usage"]["llm_calls"] == 1 for a in answers)  # nothing cached, nothing failed
    opened = [r for r in caplog.records if r.name == "llm.cache_open"]
    assert len(opened) == 1  # logged once, not per request
    health = strict_json(client.get("/health"))
    assert health["status"] == "degraded"
    assert health["cache"]["backend"] == "sqlite" and health["cache"]["status"] == "degraded"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'neuron_interp_cache_errors_total{backend="sqlite",operation="open"} 1.0' in metrics


# -- the app with Redis ------------------------------------------------------------


def _llm_client(make_client, stub, **overrides):  # noqa: F811
    options = dict(
        openai_base_url=stub.base_url, openai_api_key=API_KEY, simulator_model="stub-model",
        llm_max_retries=1, request_timeout=10.0, cache_path="",
    )
    options.update(overrides)
    return make_client(**options)


def test_two_apps_share_answers_through_redis(make_client, stub, redis_url):  # noqa: F811
    first = _llm_client(make_client, stub, cache_url=redis_url)
    second = _llm_client(make_client, stub, cache_url=redis_url)  # another replica
    a = strict_json(first.post("/score", json=ANIMALS))
    calls = stub.calls()
    b = strict_json(second.post("/score", json=ANIMALS))
    assert a["usage"]["llm_calls"] == 1
    assert stub.calls() == calls
    assert b["usage"]["llm_calls"] == 0 and b["usage"]["cache_hits"] == 2
    assert b["score"] == a["score"]
    health = strict_json(second.get("/health"))
    assert health["status"] == "ok" and health["cache"]["backend"] == "redis"


def test_redis_down_answers_and_counts(make_client, stub):  # noqa: F811
    client = _llm_client(make_client, stub, cache_url=f"redis://127.0.0.1:{free_port()}/0")
    first = client.post("/score", json=ANIMALS)
    second = client.post("/score", json=ANIMALS)
    assert (first.status_code, second.status_code) == (200, 200)
    assert strict_json(second)["usage"]["llm_calls"] == 1  # a miss, paid again
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'neuron_interp_cache_errors_total{backend="redis",operation="get"}' in metrics
    health = strict_json(client.get("/health"))
    assert health["status"] == "degraded" and health["cache"]["status"] == "degraded"
