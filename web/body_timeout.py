"""A client that sends its body slowly must not hold a worker thread: 408, not a hang; and a
body whose framing the server cannot read (a bad chunk size) is a 400, not a 500.

gunicorn's threads read the body in the request's own thread, with no time limit of
their own. Under gunicorn, `gunicorn.conf.py` (pre_request) gives each request's body
CLIENT_BODY_TIMEOUT seconds: every recv waits at most until then, and then fails with
TimeoutError, whether the client went silent or trickles a byte at a time. Here, the
app's side: that TimeoutError, and a body still arriving past the same limit between
reads (any WSGI server), become a JSON 408 `request_timeout`. A reverse proxy that
buffers bodies (nginx does by default) protects the workers further.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Flask
from werkzeug.exceptions import BadRequest, HTTPException, RequestTimeout

from runtime.settings import Settings


class _DeadlineInput:
    """`wsgi.input` whose reads fail once `seconds` have passed since the first one."""

    def __init__(self, stream: Any, seconds: float) -> None:
        self._stream = stream
        self._seconds = seconds
        self._deadline: float | None = None

    def _guard(self, read, *args):
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        elif now > self._deadline:
            raise RequestTimeout(f"the body did not arrive within {self._seconds:g} s")
        try:
            return read(*args)
        except TimeoutError:  # the socket timeout of gunicorn.conf.py's pre_request
            raise RequestTimeout(f"the client stopped sending for {self._seconds:g} s") from None
        except HTTPException:
            raise
        except Exception as exc:  # the server's body reader refused the framing (a bad chunk size, ...)
            raise BadRequest(f"the request body is malformed ({type(exc).__name__})") from None

    def read(self, *args):
        return self._guard(self._stream.read, *args)

    def readline(self, *args):
        return self._guard(self._stream.readline, *args)

    def readlines(self, *args):
        return self._guard(self._stream.readlines, *args)

    def __iter__(self):
        return iter(self.readline, b"")


def init_app(app: Flask, settings: Settings) -> None:
    inner = app.wsgi_app
    seconds = settings.client_body_timeout

    def wsgi_app(environ, start_response):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], seconds)
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]
