"""A slow or silent body sender gets a JSON 408, and the thread is not held."""
from __future__ import annotations

import io
import json
import time

from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.conftest import NEURONPEDIA_EXAMPLE


class TrickleStream:
    """A body that arrives one byte per `pause` seconds, and says so: short reads, as a socket's."""

    def __init__(self, data: bytes, pause: float) -> None:
        self.data, self.pause, self.pos = data, pause, 0

    def read(self, size=-1):
        if self.pos >= len(self.data):
            return b""
        time.sleep(self.pause)
        self.pos += 1
        return self.data[self.pos - 1 : self.pos]


class SilentStream(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        raise TimeoutError("timed out")  # what a socket with a timeout raises


def post_stream(client, stream, length):
    """POST with a raw, unseekable `wsgi.input`, as a socket is (the test client wants seekable)."""
    environ = EnvironBuilder(path="/score", method="POST", content_type="application/json").get_environ()
    environ["wsgi.input"] = stream
    environ["CONTENT_LENGTH"] = str(length)
    app_iter, status, headers = run_wsgi_app(client.application, environ)
    body = b"".join(app_iter)
    return int(status.split()[0]), json.loads(body)


def test_a_trickling_body_is_a_408_soon_after_the_limit(make_client):
    client = make_client(client_body_timeout=0.3)
    raw = json.dumps(NEURONPEDIA_EXAMPLE).encode()
    started = time.monotonic()
    response = post_stream(client, TrickleStream(raw, 0.05), len(raw))
    status, body = response
    assert time.monotonic() - started < 3
    assert status == 408 and body["code"] == "request_timeout"


def test_a_silent_client_is_a_408(make_client):
    client = make_client(client_body_timeout=5)
    response = post_stream(client, io.BufferedReader(SilentStream()), 500)
    status, body = response
    assert status == 408 and body["code"] == "request_timeout" and body["error"]


def test_a_body_in_time_is_served(make_client):
    client = make_client(client_body_timeout=5)
    raw = json.dumps(NEURONPEDIA_EXAMPLE).encode()
    status, body = post_stream(client, io.BytesIO(raw), len(raw))
    assert status == 200 and body["score"] is not None
