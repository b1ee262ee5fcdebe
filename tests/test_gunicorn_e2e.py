"""The service as deployed: gunicorn with gunicorn.conf.py on a loopback port, real HTTP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.client import Client, ServiceError
from tests.conftest import NEURONPEDIA_EXAMPLE, ROOT

SECRET = "e2e-secret-5521"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed beside this Python")
    port = _free_port()
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "SERVER_KEY": SECRET,
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "CACHE_PATH": "",
        "RATE_LIMIT": "",
        "CLIENT_BODY_TIMEOUT": "2",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "server:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gunicorn did not start within 60 s")
    yield url, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def raw_post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_neuronpedia_example_through_gunicorn(service):
    url, _ = service
    result = Client(url, secret=SECRET).score(
        NEURONPEDIA_EXAMPLE["explanation"], NEURONPEDIA_EXAMPLE["activations"]
    )
    assert -1 <= result["score"] <= 1
    assert [s["simulation"]["tokens"] for s in result["simulations"]] == [
        t["tokens"] for t in NEURONPEDIA_EXAMPLE["activations"]
    ]
    assert result["simulator"]["offline"] is True


def test_secret_in_the_body_as_neuronpedia_sends_it(service):
    url, _ = service
    body = json.dumps({**NEURONPEDIA_EXAMPLE, "secret": SECRET}).encode()
    status, payload = raw_post(url + "/score", body, {"Content-Type": "application/json"})
    assert status == 200 and "score" in payload


@pytest.mark.parametrize(
    "body,headers,status,code",
    [
        (json.dumps(NEURONPEDIA_EXAMPLE).encode(), {"Content-Type": "application/json"}, 401, "unauthorized"),
        (b"{oops", {"Content-Type": "application/json", "X-Secret-Key": SECRET}, 400, "invalid_request"),
        (b"explanation=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ],
    ids=["no-secret", "malformed", "form"],
)
def test_errors_through_gunicorn_are_json(service, body, headers, status, code):
    url, _ = service
    got_status, payload = raw_post(url + "/score", body, headers)
    assert (got_status, payload["code"]) == (status, code)
    assert payload["error"]


def test_an_oversized_body_is_refused_from_its_content_length(service):
    # As curl does: headers first; the 413 comes back before the body is sent.
    url, _ = service
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5242880\r\n\r\n{"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;\x01\r\n{}\r\n0\r\n\r\n"],
    ids=["not-hex", "negative", "no-terminator", "bad-extension"],
)
def test_a_malformed_chunked_body_is_a_json_400(service, chunks):
    url, _ = service
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        reply = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:300]
    assert json.loads(body)["code"] == "invalid_request"


def _partial_post(url: str, pause: float, rounds: int) -> tuple[float, bytes]:
    """Headers for a 500-byte body, then a byte every `pause` s (or nothing when rounds is 0)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n{"
        )
        try:
            for _ in range(rounds):
                time.sleep(pause)
                conn.sendall(b" ")
        except OSError:
            pass  # the server may already have answered and closed
        reply = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            reply += chunk
            if reply.rstrip().endswith(b"}"):
                break
    return time.monotonic() - started, reply


@pytest.mark.parametrize("pause,rounds", [(0, 0), (0.25, 30)], ids=["silent", "trickling"])
def test_a_slow_client_gets_408_and_frees_its_thread(service, pause, rounds):
    url, _ = service
    elapsed, reply = _partial_post(url, pause, rounds)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    assert json.loads(body)["code"] == "request_timeout"
    assert elapsed < 6  # CLIENT_BODY_TIMEOUT is 2 s here
    with urllib.request.urlopen(url + "/health", timeout=5) as health:
        assert health.status == 200


def test_explain_through_gunicorn(service):
    url, _ = service
    result = Client(url, secret=SECRET).explain(NEURONPEDIA_EXAMPLE["activations"], style="highlight")
    assert result["explanation"] and result["style"] == "highlight" and result["offline"] is True


def test_wrong_secret_with_the_client(service):
    url, _ = service
    with pytest.raises(ServiceError) as info:
        Client(url, secret="nope").score("x", NEURONPEDIA_EXAMPLE["activations"])
    assert info.value.status == 401


def test_sigterm_stops_gunicorn_cleanly(service):
    url, proc = service
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
