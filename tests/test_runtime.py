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


# -- the backend registry and capabilities ------------------------------------------


def test_the_backend_is_chosen_by_llm_backend_and_declares_its_capabilities():
    from llm.backends.capabilities import ALL

    runtime = Runtime(Settings(cache_path="", openai_base_url="http://127.0.0.1:9/v1"))
    assert runtime.backend.name == "openai"
    assert runtime.backend.capabilities == ALL


def test_an_unknown_backend_or_capability_is_a_configuration_error():
    from runtime.settings import ConfigError

    with pytest.raises(ConfigError, match="LLM_BACKEND='llama-native'; one of openai"):
        Settings(llm_backend="llama-native")
    with pytest.raises(ConfigError, match="unknown capabilities telepathy"):
        Settings(llm_capabilities="chat, telepathy")


@pytest.mark.parametrize(
    "simulator, missing",
    [("logprob", "top_logprobs"), ("all_at_once", "completions_logprobs")],
)
def test_a_simulator_the_backend_cannot_serve_is_a_400_naming_both(make_client, simulator, missing):
    client = make_client(openai_base_url="http://127.0.0.1:9/v1", llm_capabilities="chat")
    response = client.post(
        "/score",
        json={"explanation": "x", "simulator": simulator, "activations": [{"tokens": ["a"], "values": [1]}]},
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_request"
    assert f"'{simulator}' simulator" in body["error"] and missing in body["error"]
    assert "'openai' backend" in body["error"]


def test_a_backend_with_the_capability_is_called(make_client):
    # The same request with the capability declared reaches the (unreachable) backend: 503, not 400.
    client = make_client(openai_base_url="http://127.0.0.1:9/v1", llm_capabilities="chat,top_logprobs", llm_max_retries=0)
    response = client.post(
        "/score",
        json={"explanation": "x", "simulator": "logprob", "activations": [{"tokens": ["a"], "values": [1]}]},
    )
    assert response.status_code == 503


def test_health_lists_the_backend_and_never_a_credential_in_its_url(make_client):
    url = "https://user:pw@gateway.example:8443/v1?api-key=topsecret#frag"
    health = make_client(openai_base_url=url, llm_capabilities="chat").get("/health").get_json()
    assert health["llm_backend"] == {"name": "openai", "capabilities": ["chat"]}
    assert health["openai_base_url"] == "https://gateway.example:8443/v1"
    text = str(health)
    assert "topsecret" not in text and "pw" not in text and "user" not in text


def test_env_example_lists_every_setting():
    import re
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = sorted(f.name.upper() for f in fields(Settings) if f.name.upper() not in listed)
    assert missing == []
