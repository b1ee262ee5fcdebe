"""The batch-job client, against requests-mock (it is our only code that speaks `requests`)."""
from __future__ import annotations

import pytest

from cli.client import Client, ServiceError
from tests.conftest import NEURONPEDIA_EXAMPLE

URL = "http://interp.test"


@pytest.fixture
def waits():
    return []


@pytest.fixture
def client(waits):
    return Client(URL, secret="k3y", retries=2, max_wait=5, sleep=waits.append)


def test_score_posts_the_neuronpedia_body_with_a_bearer_secret(requests_mock, client):
    requests_mock.post(f"{URL}/score", json={"score": 0.5, "simulations": []})
    result = client.score("fast animals", NEURONPEDIA_EXAMPLE["activations"], simulator="offline")
    assert result["score"] == 0.5
    sent = requests_mock.last_request
    assert sent.headers["Authorization"] == "Bearer k3y"
    assert sent.json() == {
        "explanation": "fast animals",
        "activations": NEURONPEDIA_EXAMPLE["activations"],
        "simulator": "offline",
    }


def test_errors_carry_the_status_and_code(requests_mock, client):
    requests_mock.post(f"{URL}/score", status_code=400, json={"error": "activations[1].values: bad", "code": "invalid_request"})
    with pytest.raises(ServiceError) as info:
        client.score("x", [])
    assert info.value.status == 400 and info.value.code == "invalid_request"
    assert "activations[1]" in info.value.message
    assert requests_mock.call_count == 1


def test_a_wrong_secret_is_not_retried(requests_mock, client, waits):
    requests_mock.post(f"{URL}/explain", status_code=401, json={"error": "wrong", "code": "unauthorized"})
    with pytest.raises(ServiceError, match="unauthorized"):
        client.explain([])
    assert requests_mock.call_count == 1 and waits == []


def test_429_is_retried_after_the_servers_wait_capped(requests_mock, client, waits):
    requests_mock.post(
        f"{URL}/score",
        [
            {"status_code": 429, "json": {"error": "slow down", "code": "rate_limited"}, "headers": {"Retry-After": "3"}},
            {"status_code": 429, "json": {"error": "slow down", "code": "rate_limited"}, "headers": {"Retry-After": "60"}},
            {"status_code": 200, "json": {"score": 0.1}},
        ],
    )
    assert client.score("x", [])["score"] == 0.1
    assert waits == [3.0, 5]


def test_retries_are_bounded(requests_mock, client, waits):
    requests_mock.post(f"{URL}/score", status_code=503, json={"error": "down", "code": "backend_unavailable"})
    with pytest.raises(ServiceError) as info:
        client.score("x", [])
    assert info.value.code == "backend_unavailable"
    assert requests_mock.call_count == 3 and waits == [1.0, 2.0]


def test_a_non_json_answer_is_a_clear_error(requests_mock, client):
    requests_mock.get(f"{URL}/health", status_code=502, text="<html>Bad Gateway</html>")
    with pytest.raises(ServiceError) as info:
        client.health()
    assert info.value.code == "bad_response" and "Bad Gateway" in info.value.message
