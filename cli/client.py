"""A small Python client for batch jobs: `score`, `explain`, `similarity` over HTTP.

    from cli.client import Client
    c = Client("http://localhost:5000", secret="...")
    result = c.score("fast animals", [{"tokens": [...], "values": [...]}])

Errors come back as `ServiceError` with the service's status and stable `code`. A 429
or 503 is retried a bounded number of times, waiting as `Retry-After` says (capped);
nothing else is retried, so a wrong secret fails at once.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import requests

RETRYABLE = frozenset({429, 503})


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:5000",
        *,
        secret: str | None = None,
        timeout: float = 130.0,
        retries: int = 2,
        max_wait: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait
        self.session = session or requests.Session()
        self._sleep = sleep
        if secret:
            self.session.headers["Authorization"] = f"Bearer {secret}"

    def score(self, explanation: str, activations: list[dict], **options: Any) -> dict:
        return self._post("/score", {"explanation": explanation, "activations": activations, **options})

    def explain(self, activations: list[dict], **options: Any) -> dict:
        return self._post("/explain", {"activations": activations, **options})

    def similarity(self, explanation: str, references: list[str], **options: Any) -> dict:
        return self._post("/similarity", {"explanation": explanation, "references": references, **options})

    def post(self, path: str, body: dict) -> dict:
        """Any route's answer, with the same retries and errors as the methods above."""
        return self._post(path, body)

    def health(self) -> dict:
        response = self.session.get(f"{self.base_url}/health", timeout=self.timeout)
        return self._json(response)

    def _post(self, path: str, body: dict) -> dict:
        for attempt in range(self.retries + 1):
            response = self.session.post(f"{self.base_url}{path}", json=body, timeout=self.timeout)
            if response.status_code not in RETRYABLE or attempt == self.retries:
                return self._json(response)
            self._sleep(self._wait(response, attempt))
        raise AssertionError("unreachable")

    def _wait(self, response: requests.Response, attempt: int) -> float:
        try:
            wait = float(response.headers.get("Retry-After", ""))
        except ValueError:
            wait = 2.0**attempt
        return min(max(wait, 0.0), self.max_wait)

    @staticmethod
    def _json(response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok and isinstance(body, dict):
            return body
        if isinstance(body, dict) and "code" in body:
            raise ServiceError(response.status_code, body["code"], body.get("error", ""))
        raise ServiceError(response.status_code, "bad_response", response.text[:200])
