"""The composition root: what it builds, and when."""
from __future__ import annotations

import pytest

from llm.errors import BackendUnavailable
from runtime import Runtime
from runtime.settings import Settings


class CountingSimulator:
    name = "offline"
    model = "counting"

    def __init__(self):
        self.warmed = 0

    def warm_up(self):
        self.warmed += 1


def test_warm_up_loads_the_default_offline_simulator(monkeypatch):
    runtime = Runtime(Settings(cache_path=""))
    simulator = CountingSimulator()
    monkeypatch.setattr(runtime, "simulator", lambda name=None, model=None: simulator)
    runtime.warm_up()
    assert simulator.warmed == 1


def test_warm_up_does_nothing_when_an_llm_is_the_default(monkeypatch):
    runtime = Runtime(Settings(cache_path="", openai_base_url="http://127.0.0.1:9/v1"))
    monkeypatch.setattr(runtime, "simulator", lambda *a, **k: pytest.fail("nothing to warm"))
    runtime.warm_up()


def test_edge_objects_are_built_once_and_shared():
    runtime = Runtime(Settings(cache_path="", offline_embeddings=False))
    assert runtime.embedder is None
    assert runtime.cache is runtime.cache
    assert runtime.backend is None


def test_llm_simulators_need_a_backend():
    runtime = Runtime(Settings(cache_path=""))
    with pytest.raises(BackendUnavailable, match="OPENAI_API_KEY"):
        runtime.simulator("batched")
    assert runtime.simulator("offline").name == "offline"
    assert runtime.explainer_backend() is None
