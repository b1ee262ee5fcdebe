"""RATE_LIMIT: per client (the key's holder, else the address), 429 as JSON with Retry-After."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from runtime.settings import ConfigError, Settings
from server import create_app
from tests.conftest import NEURONPEDIA_EXAMPLE, make_settings
from tests.test_api_score import FakeRuntime, FakeSimulator, assert_error
from web import limits as ratelimit

KEY = "s3cret-key-for-limits"
ALICE = {"REMOTE_ADDR": "192.0.2.1"}
BOB = {"REMOTE_ADDR": "192.0.2.2"}


def limited_client(limit="2/minute", **overrides):
    settings = make_settings(rate_limit=limit, **overrides)
    return create_app(settings, FakeRuntime(FakeSimulator(), **overrides)).test_client()


def score(client, environ=ALICE, headers=None, **body):
    payload = {**NEURONPEDIA_EXAMPLE, **body}
    return client.post("/score", json=payload, headers=headers or {}, environ_base=environ)


def assert_limited(response) -> int:
    body = assert_error(response, 429, "rate_limited", "rate limit")
    assert set(body) == {"error", "code"}
    retry = response.headers["Retry-After"]
    assert retry.isdigit(), retry  # whole seconds, not an HTTP date
    assert response.headers["X-Request-ID"]
    return int(retry)


def test_no_limit_by_default():
    client = create_app(make_settings(), FakeRuntime(FakeSimulator())).test_client()
    assert client.application.extensions["ratelimit"] is None
    assert all(score(client).status_code == 200 for _ in range(10))


def test_over_the_limit_is_a_json_429_with_retry_after():
    client = limited_client("2/minute")
    assert [score(client).status_code for _ in range(2)] == [200, 200]
    retry = assert_limited(score(client))
    assert 1 <= retry <= 60


def test_the_limit_is_per_client_address():
    client = limited_client("1/minute")
    assert score(client, ALICE).status_code == 200
    assert_limited(score(client, ALICE))
    assert score(client, BOB).status_code == 200


def test_the_limit_covers_every_route_together():
    client = limited_client("2/minute")
    assert client.get("/openapi.json", environ_base=ALICE).status_code == 200
    assert score(client).status_code == 200
    assert_limited(client.get("/openapi.json", environ_base=ALICE))


def test_health_and_metrics_are_never_limited():
    client = limited_client("1/minute")
    for _ in range(5):
        assert client.get("/health", environ_base=ALICE).status_code == 200
        assert client.get("/metrics", environ_base=ALICE).status_code == 200
    assert score(client).status_code == 200  # the allowance was not spent by them


@pytest.mark.parametrize(
    "where",
    [
        {"headers": {"X-Secret-Key": KEY}},
        {"headers": {"Authorization": f"Bearer {KEY}"}},
        {"secret": KEY},
    ],
    ids=["header", "bearer", "body"],
)
def test_the_holder_of_the_key_is_one_client_from_any_address(where):
    client = limited_client("2/minute", server_key=KEY)
    assert score(client, ALICE, **where).status_code == 200
    assert score(client, BOB, **where).status_code == 200
    assert_limited(score(client, {"REMOTE_ADDR": "192.0.2.3"}, **where))
    # ...and its addresses keep their own allowance for requests without the key.
    assert_error(score(client, ALICE), 401, "unauthorized")


def test_wrong_secrets_do_not_buy_fresh_allowances():
    # Each guess at the key counts against the guesser's address.
    client = limited_client("3/minute", server_key=KEY)
    statuses = [score(client, ALICE, secret=f"guess-{i}").status_code for i in range(3)]
    assert statuses == [401, 401, 401]
    assert_limited(score(client, ALICE, secret="guess-3"))
    assert_limited(score(client, ALICE, headers={"X-Secret-Key": "guess-4"}))


@pytest.mark.parametrize(
    "data,content_type,status",
    [
        (b"{not json", "application/json", 400),
        (b'{"secret": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json", 400),
        (b'\xff\xfe{"secret": "x"}', "application/json", 400),
        (b'["secret"]', "application/json", 400),
        (b'{"secret": 5}', "application/json", 401),
        (b'{"secret": "x"}', "text/plain", 415),
    ],
)
def test_the_key_function_never_fails_a_request(data, content_type, status):
    client = limited_client("100/minute", server_key=KEY)
    response = client.post("/score", data=data, content_type=content_type, environ_base=ALICE)
    assert_error(response, status, response.get_json()["code"])


def test_reading_the_secret_from_the_body_leaves_the_body_to_the_view():
    client = limited_client("100/minute", server_key=KEY)
    response = score(client, secret=KEY)
    assert response.status_code == 200
    assert len(response.get_json()["simulations"]) == 2


def test_a_body_over_the_limit_is_not_read_for_the_key():
    client = limited_client("100/minute", server_key=KEY, max_content_length=2000)
    response = client.post(
        "/score", json={**NEURONPEDIA_EXAMPLE, "secret": KEY, "explanation": "x" * 5000}, environ_base=ALICE
    )
    assert_error(response, 413, "payload_too_large")


def test_ipv6_clients_count_by_their_slash_64():
    a = ratelimit.address_bucket("2001:db8:1:2:aaaa::1")
    b = ratelimit.address_bucket("2001:db8:1:2:bbbb::2")
    c = ratelimit.address_bucket("2001:db8:1:3::1")
    assert a == b != c
    assert ratelimit.address_bucket("::ffff:192.0.2.1") == ratelimit.address_bucket("192.0.2.1")
    assert ratelimit.address_bucket(None) == "addr:unknown"
    assert ratelimit.address_bucket("not-an-ip") == "addr:not-an-ip"


def test_the_bucket_name_does_not_reveal_the_key():
    bucket = ratelimit.key_bucket(KEY)
    assert KEY not in bucket and bucket.startswith("key:")
    assert bucket == ratelimit.key_bucket(KEY) != ratelimit.key_bucket(KEY + "x")


@pytest.mark.parametrize("limit", ["sixty", "60 per fortnight", "/minute"])
def test_a_bad_limit_string_is_a_config_error(limit):
    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        create_app(make_settings(rate_limit=limit))


def test_an_unknown_storage_is_a_config_error():
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URL"):
        create_app(make_settings(rate_limit="5/minute", ratelimit_storage_url="carrier-pigeon://coop"))


def test_settings_come_from_the_environment():
    s = Settings.from_env(
        {"RATE_LIMIT": "60/minute", "RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/0"}, dotenv_path=None
    )
    assert (s.rate_limit, s.ratelimit_storage_url) == ("60/minute", "redis://127.0.0.1:6379/0")


# -- Redis --------------------------------------------------------------------------


@pytest.fixture
def redis_client():
    return pytest.importorskip("redis", reason="the redis package is needed for redis:// storage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_redis_does_not_fail_requests(redis_client, caplog):
    # A closed loopback port refuses at once: each process falls back to its own memory.
    client = limited_client("2/minute", ratelimit_storage_url=f"redis://127.0.0.1:{free_port()}/0")
    assert [score(client).status_code for _ in range(2)] == [200, 200]
    assert_limited(score(client))
    assert "falling back to in-memory" in caplog.text


@pytest.fixture
def redis_url(tmp_path, redis_client):
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connection = redis_client.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        for _ in range(100):
            try:
                connection.ping()
                break
            except redis_client.exceptions.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.skip("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_replicas_share_the_limit_through_redis(redis_url, redis_client):
    # Two apps stand for two workers or two replicas behind one load balancer.
    first = limited_client("3/minute", ratelimit_storage_url=redis_url)
    second = limited_client("3/minute", ratelimit_storage_url=redis_url)
    statuses = [score(c).status_code for c in (first, second, first)]
    assert statuses == [200, 200, 200]
    assert_limited(score(second))
    assert score(first, BOB).status_code == 200
    keys = redis_client.Redis.from_url(redis_url).keys("*")
    assert keys and all(b"neuron-interp" in k for k in keys)
    assert not any(KEY.encode() in k for k in keys)
    json.dumps([k.decode() for k in keys])
