"""Shared fixtures: a fresh app per test, built from explicit Settings (never the real environment)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime import Runtime
from runtime.settings import Settings
from server import create_app

ROOT = Path(__file__).resolve().parent.parent

SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))

try:  # the loopback OpenAI-compatible stub and its fixtures
    from tests.conftest_stub import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - only while the stub does not exist
    pass


def make_settings(**overrides) -> Settings:
    base = dict(cache_path="", offline_embeddings=True)
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_client():
    """A client for an app with custom settings (and optionally a custom Runtime)."""

    def make(runtime: Runtime | None = None, **overrides):
        s = make_settings(**overrides)
        return create_app(s, runtime or Runtime(s)).test_client()

    return make


@pytest.fixture(scope="session")
def puzzles() -> dict:
    path = SHARED_DATA / "puzzles" / "puzzles.json"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def neuronpedia_features() -> list[dict]:
    features = []
    for name in ("batch-0.json", "batch-1.json"):
        path = SHARED_DATA / "neuronpedia-gpt2-small-res-jb" / name
        if not path.exists():
            pytest.skip(f"shared data not found at {path}")
        features.extend(json.loads(path.read_text())["features"])
    return features


NEURONPEDIA_EXAMPLE = {
    "explanation": "fast animals",
    "secret": "",
    "activations": [
        {"tokens": ["the ", " quick", " brown", " fox"], "values": [0, 2, 0, 2.5]},
        {"tokens": ["spotted ", " leopard", " sprints", " at"], "values": [0.5, 2.5, 1.5, 0]},
    ],
}
