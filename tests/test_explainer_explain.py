"""explain(): backends, retries, samples, dry runs; rank_candidates() for best-of-n."""
from __future__ import annotations

import time

import pytest

from explainer.best_of_n import RankedCandidate, rank_candidates, split_explain_heldout
from explainer.errors import NothingToExplain
from explainer.explain import ExplainResult, explain
from explainer.records import ActivationRecord
from llm.backend import Completion
from llm.errors import DeadlineExceeded, UpstreamError
from llm.tokens import count_message_tokens
from llm.usage import Usage

RECORDS = [
    {"tokens": ["the ", " quick", " brown", " fox"], "values": [0, 2, 0, 2.5]},
    {"tokens": ["spotted ", " leopard", " sprints", " at"], "values": [0.5, 2.5, 1.5, 0]},
]


class FakeBackend:
    """Answers from a script, one reply per call, and records every call."""

    name = "fake"

    def __init__(self, replies, usage=None, model=None):
        self.replies = list(replies)
        self.calls = []
        self.usage = usage
        self.model = model

    def chat(self, messages, *, model, temperature=0.0, max_tokens=None, json_mode=False,
             top_logprobs=None, deadline=None):
        self.calls.append({"messages": messages, "model": model, "temperature": temperature,
                           "max_tokens": max_tokens, "deadline": deadline})
        if not self.replies:
            raise AssertionError("more calls than scripted replies")
        usage = self.usage if self.usage is not None else Usage(prompt_tokens=100, completion_tokens=5)
        return Completion(text=self.replies.pop(0), usage=usage, model=self.model)

    def complete(self, prompt, **kwargs):  # pragma: no cover - not used by the explainer
        raise AssertionError("the explainer uses chat")


def test_offline_without_backend():
    result = explain(RECORDS)
    assert isinstance(result, ExplainResult)
    assert result.backend == "offline" and result.model is None
    assert result.explanation == 'tokens such as "fox", "leopard", "quick"'
    assert result.candidates == [result.explanation]
    assert result.usage == Usage() and result.messages == [] and not result.dry_run
    assert explain(RECORDS, n=3).candidates == [result.explanation]  # deterministic: one candidate


def test_one_call_and_a_clean_answer():
    backend = FakeBackend(["the main thing this neuron does is find fast animals."])
    result = explain(RECORDS, style="highlight", backend=backend, model="m1", temperature=0.7)
    assert result.explanation == "fast animals" and result.candidates == ["fast animals"]
    assert (result.backend, result.model, result.style) == ("fake", "m1", "highlight")
    assert len(backend.calls) == 1
    call = backend.calls[0]
    assert call["model"] == "m1" and call["temperature"] == 0.7 and call["max_tokens"] == 60
    assert call["messages"] == result.messages
    assert result.usage.llm_calls == 1 and result.usage.prompt_tokens == 100
    assert result.prompt_tokens == count_message_tokens(result.messages)


def test_the_model_the_server_reports_is_kept():
    backend = FakeBackend(["fast animals"], model="m1-2024-01-01")
    assert explain(RECORDS, backend=backend, model="m1").model == "m1-2024-01-01"


def test_unusable_reply_is_retried_once():
    backend = FakeBackend(["", '"fast animals"'])
    result = explain(RECORDS, backend=backend, model="m")
    assert result.explanation == "fast animals"
    assert len(backend.calls) == 2 and result.usage.llm_calls == 2


def test_two_unusable_replies_are_an_upstream_error():
    backend = FakeBackend(["   ", "I'm sorry, I can't help with that."])
    with pytest.raises(UpstreamError, match="no usable explanation"):
        explain(RECORDS, backend=backend, model="m")
    assert len(backend.calls) == 2


def test_n_candidates_are_sampled_and_deduplicated():
    backend = FakeBackend(["fast animals", "Fast animals.", "", "big cats", "animal names"])
    result = explain(RECORDS, backend=backend, model="m", n=4, temperature=1.0)
    # slot 1: fast animals; slot 2: a repeat; slot 3: empty, retried -> big cats; slot 4.
    assert result.candidates == ["fast animals", "big cats", "animal names"]
    assert result.explanation == "fast animals"
    assert len(backend.calls) == 5 and result.usage.llm_calls == 5
    assert all(call["temperature"] == 1.0 for call in backend.calls)


def test_cache_hits_are_not_counted_as_calls():
    backend = FakeBackend(["fast animals"], usage=Usage(cache_hits=1))
    result = explain(RECORDS, backend=backend, model="m")
    assert result.usage.llm_calls == 0 and result.usage.cache_hits == 1


def test_dry_run_makes_no_call():
    backend = FakeBackend([])
    result = explain(RECORDS, style="original", backend=backend, model="m", dry_run=True)
    assert backend.calls == []
    assert result.dry_run and result.explanation is None and result.candidates == []
    assert result.messages[0]["role"] == "system" and result.messages[-1]["role"] == "user"
    assert result.prompt_tokens == count_message_tokens(result.messages) > 0
    assert result.usage == Usage() and result.backend == "fake"
    # Without a backend, a dry run still shows the prompt an LLM would get.
    offline = explain(RECORDS, style="original", dry_run=True)
    assert offline.messages == result.messages and offline.prompt_tokens == result.prompt_tokens


def test_bad_input():
    with pytest.raises(NothingToExplain):
        explain([{"tokens": ["a", "b"], "values": [0, -1]}], backend=FakeBackend([]), model="m")
    with pytest.raises(ValueError):
        explain([], dry_run=True)
    with pytest.raises(ValueError):
        explain(RECORDS, n=0)
    with pytest.raises(ValueError):
        explain(RECORDS, threshold=0)
    with pytest.raises(ValueError):
        explain(RECORDS, backend=FakeBackend(["x"]))  # no model
    with pytest.raises(ValueError):
        explain([{"tokens": ["a"], "values": [float("nan")]}])
    with pytest.raises(ValueError):
        explain([{"tokens": [], "values": []}])


def test_deadline_passed_before_a_call():
    backend = FakeBackend(["fast animals"])
    with pytest.raises(DeadlineExceeded):
        explain(RECORDS, backend=backend, model="m", deadline=time.monotonic() - 1)
    assert backend.calls == []
    explain(RECORDS, backend=backend, model="m", deadline=time.monotonic() + 60)
    assert backend.calls[0]["deadline"] is not None


def test_rank_candidates_best_first_none_last():
    scores = {"a": 0.2, "b": None, "c": 0.9, "d": float("nan"), "e": 0.2}
    heldout = [ActivationRecord(["x"], [1.0])]
    seen = []

    def simulate_and_score(explanation, records):
        seen.append((explanation, records))
        return scores[explanation]

    ranked = rank_candidates(list(scores), heldout, simulate_and_score)
    assert [c.explanation for c in ranked] == ["c", "a", "e", "b", "d"]
    assert ranked[0] == RankedCandidate("c", 0.9)
    assert ranked[-1].score is None and ranked[-2].score is None
    assert all(records is heldout for _, records in seen)
    with pytest.raises(ValueError):
        rank_candidates(["a"], [], simulate_and_score)


def test_best_of_n_flow():
    top = [ActivationRecord(["x", f" t{i}"], [0.0, 10.0 - i]) for i in range(8)]
    explain_part, heldout = split_explain_heldout(top, top_k=5)
    backend = FakeBackend(["tokens t", "letters"])
    result = explain(explain_part, backend=backend, model="m", n=2)
    ranked = rank_candidates(result.candidates, heldout, lambda e, r: 0.5 if e == "letters" else 0.1)
    assert [c.explanation for c in ranked] == ["letters", "tokens t"]


def test_result_serialises():
    data = explain(RECORDS, style="avhs", dry_run=True).to_dict()
    assert data["style"] == "avhs" and data["explanation"] is None
    assert data["usage"]["total_tokens"] == 0 and data["prompt_tokens"] > 0
    assert data["messages"][0]["role"] == "system"
