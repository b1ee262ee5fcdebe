"""TRUSTED_PROXY_HOPS: forwarded headers are believed only from the proxies we trust."""
from __future__ import annotations

import pytest
from flask import request

from runtime.settings import ConfigError, Settings
from server import create_app
from tests.conftest import make_settings

PEER = "198.51.100.7"  # the address the socket sees (documentation range, never contacted)


def whoami_client(**overrides):
    app = create_app(make_settings(**overrides))

    @app.get("/_whoami")
    def whoami():
        return {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host}

    return app.test_client()


def whoami(client, headers=None) -> dict:
    response = client.get("/_whoami", headers=headers or {}, environ_base={"REMOTE_ADDR": PEER})
    assert response.status_code == 200
    return response.get_json()


FORWARDED = {
    "X-Forwarded-For": "203.0.113.66, 192.0.2.10",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "scorer.example.org",
}


def test_by_default_no_forwarded_header_is_believed():
    seen = whoami(whoami_client(), FORWARDED)
    assert seen == {"addr": PEER, "scheme": "http", "host": "localhost"}


def test_one_hop_takes_the_last_value_only():
    # The client wrote 203.0.113.66 itself; our proxy appended the peer it saw.
    seen = whoami(whoami_client(trusted_proxy_hops=1), FORWARDED)
    assert seen == {"addr": "192.0.2.10", "scheme": "https", "host": "scorer.example.org"}


def test_two_hops_take_the_second_value_from_the_right():
    headers = {"X-Forwarded-For": "10.9.9.9, 203.0.113.66, 192.0.2.10"}
    assert whoami(whoami_client(trusted_proxy_hops=2), headers)["addr"] == "203.0.113.66"


def test_too_few_values_for_the_hops_are_ignored():
    # Fewer entries than trusted hops: the request did not come through our proxies.
    assert whoami(whoami_client(trusted_proxy_hops=2), {"X-Forwarded-For": "203.0.113.66"})["addr"] == PEER


def test_without_forwarded_headers_the_peer_stands():
    assert whoami(whoami_client(trusted_proxy_hops=1))["addr"] == PEER


def test_the_access_log_shows_the_address_after_proxyfix(caplog):
    caplog.set_level("INFO", logger="neuron_interp.access")
    client = whoami_client(trusted_proxy_hops=1)
    client.get("/health", headers=FORWARDED, environ_base={"REMOTE_ADDR": PEER})
    (record,) = [r for r in caplog.records if r.name == "neuron_interp.access"]
    assert record.fields["client"] == "192.0.2.10"


def test_hops_are_read_from_the_environment():
    assert Settings.from_env({"TRUSTED_PROXY_HOPS": "2"}, dotenv_path=None).trusted_proxy_hops == 2
    assert Settings.from_env({}, dotenv_path=None).trusted_proxy_hops == 0
    with pytest.raises(ConfigError):
        Settings.from_env({"TRUSTED_PROXY_HOPS": "-1"}, dotenv_path=None)
