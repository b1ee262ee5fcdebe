"""Fixtures for the loopback OpenAI-compatible stub (imported by tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.stub_openai import StubOpenAI, StubReply, refused_url  # noqa: F401

__all__ = ["stub_openai", "stub_backend", "refused_base_url", "make_backend", "stub_client", "StubReply"]

STUB_API_KEY = "sk-test-stub-client-6610"  # the key stub_client's apps send; it must never show


@pytest.fixture
def stub_openai():
    """A running stub answering simulation prompts with the keyword oracle."""
    with StubOpenAI() as stub:
        yield stub


@pytest.fixture
def make_backend():
    """Builds an OpenAIBackend with test-friendly timeouts and backoff; closes it afterwards."""
    from llm.backends.openai import OpenAIBackend

    made = []

    def make(base_url: str, **overrides):
        options = dict(
            api_key="sk-test-key-0123456789",
            base_url=base_url,
            connect_timeout=2.0,
            read_timeout=5.0,
            max_retries=2,
            backoff_base=0.01,
            backoff_max=0.05,
        )
        options.update(overrides)
        backend = OpenAIBackend(**options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def stub_backend(stub_openai, make_backend):
    return make_backend(stub_openai.base_url)


@pytest.fixture
def refused_base_url() -> str:
    return refused_url()


@pytest.fixture
def stub_client(make_client, tmp_path):
    """make(handler, **settings) -> (client, stub): a started stub answering with `handler` and
    an app pointed at it (STUB_API_KEY, model "stub-model", no retries, a 10 s deadline, a fresh
    SQLite cache; `settings` override these). Every stub made is stopped afterwards."""
    made = []

    def make(handler, **overrides):
        stub = StubOpenAI(handler).start()
        made.append(stub)
        options = dict(
            openai_base_url=stub.base_url, openai_api_key=STUB_API_KEY, simulator_model="stub-model",
            llm_max_retries=0, request_timeout=10.0, cache_path=str(tmp_path / "cache.sqlite3"),
        )
        options.update(overrides)
        return make_client(**options), stub

    yield make
    for stub in made:
        stub.stop()
