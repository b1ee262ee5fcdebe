"""The OpenAI-compatible backend against a real HTTP server on loopback."""
from __future__ import annotations

import email.utils
import math
import time

import pytest

from llm.backends.openai import OpenAIBackend, _retry_after
from llm.errors import BackendUnavailable, DeadlineExceeded, UpstreamError
from tests.stub_openai import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    StubOpenAI,
    StubReply,
    chat_body,
    completion_body,
    error_body,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]
KEY = "sk-test-key-0123456789"


@pytest.fixture
def stub():
    with StubOpenAI(handler=lambda request: "hello") as server:
        yield server


@pytest.fixture
def backend(stub, make_backend):
    return make_backend(stub.base_url)


def test_chat_returns_text_model_and_reported_usage(stub, backend):
    completion = backend.chat(MESSAGES, model="gpt-test", max_tokens=5)
    assert completion.text == "hello"
    assert completion.model == "gpt-test"
    usage = completion.usage
    assert usage.llm_calls == 1 and not usage.estimated
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 1
    sent = stub.requests[-1]
    assert sent.path == CHAT_PATH
    assert sent.body["temperature"] == 0.0 and sent.body["max_tokens"] == 5
    assert "response_format" not in sent.body and "logprobs" not in sent.body
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_usage_is_estimated_when_the_server_sends_none(stub, backend):
    stub.handler = lambda request: chat_body(request, "hello there", usage=False)
    usage = backend.chat(MESSAGES, model="m").usage
    assert usage.estimated
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 2


def test_json_mode_and_top_logprobs_are_requested_and_parsed(stub, backend):
    stub.handler = lambda request: chat_body(
        request, "7", logprobs=[("7", [("7", math.log(0.75)), ("8", math.log(0.25))])]
    )
    completion = backend.chat(MESSAGES, model="m", json_mode=True, top_logprobs=5)
    body = stub.requests[-1].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    (token,) = completion.logprobs
    assert token.token == "7" and token.logprob == pytest.approx(math.log(0.75))
    assert token.top == (("7", pytest.approx(math.log(0.75))), ("8", pytest.approx(math.log(0.25))))


def test_complete_echoes_prompt_logprobs(stub, backend):
    stub.handler = lambda request: completion_body(
        request, ["a", "\t", "unknown"], [None, {"\t": -0.1}, {"3": -0.2, "4": -1.0}]
    )
    completion = backend.complete("a\tunknown", model="m", max_tokens=0, echo=True, logprobs=2)
    body = stub.requests[-1].body
    assert stub.requests[-1].path == COMPLETIONS_PATH
    assert body["echo"] is True and body["logprobs"] == 2 and body["max_tokens"] == 0
    tokens = completion.logprobs
    assert [t.token for t in tokens] == ["a", "\t", "unknown"]
    assert math.isnan(tokens[0].logprob) and tokens[0].top == ()
    assert dict(tokens[2].top) == {"3": -0.2, "4": -1.0}
    assert completion.usage.llm_calls == 1 and completion.usage.prompt_tokens > 0


def test_retries_a_500_then_succeeds(stub, backend):
    stub.enqueue(StubReply(500, error_body("boom")))
    completion = backend.chat(MESSAGES, model="m")
    assert completion.text == "hello"
    assert stub.calls() == 2
    assert completion.usage.llm_calls == 1


def test_gives_up_on_5xx_after_the_retry_budget(stub, backend):
    stub.enqueue(*[StubReply(503, error_body("overloaded"))] * 3)
    with pytest.raises(UpstreamError, match="503"):
        backend.chat(MESSAGES, model="m")
    assert stub.calls() == 3  # max_retries=2: three attempts


def test_retry_after_seconds_is_honoured_on_429(stub, backend):
    stub.enqueue(StubReply(429, error_body("slow down", "rate_limit"), headers={"Retry-After": "1"}))
    started = time.monotonic()
    assert backend.chat(MESSAGES, model="m").text == "hello"
    elapsed = time.monotonic() - started
    assert stub.calls() == 2
    assert 1.0 <= elapsed < 2.0


def test_retry_after_parsing():
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({"retry-after": "0.5"}) == 0.5
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= _retry_after({"retry-after": in_ten}) <= 10.0
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert _retry_after({"retry-after": past}) == 0.0
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None


def test_a_retry_after_past_the_deadline_fails_at_once(stub, backend):
    stub.enqueue(StubReply(429, error_body("slow down"), headers={"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        backend.chat(MESSAGES, model="m", deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 1.0  # no sleeping towards a deadline it cannot meet
    assert stub.calls() == 1


def test_a_retry_after_beyond_what_we_wait_is_an_upstream_error(stub, make_backend):
    backend = make_backend(stub.base_url, max_retry_after=5)
    stub.enqueue(StubReply(429, error_body("slow down"), headers={"Retry-After": "3600"}))
    with pytest.raises(UpstreamError, match="429"):
        backend.chat(MESSAGES, model="m")
    assert stub.calls() == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_never_retried(stub, backend, status):
    # An auth error body may quote the key: the message must not.
    stub.enqueue(StubReply(status, error_body(f"Incorrect API key provided: {KEY}", "invalid_request_error")))
    with pytest.raises(UpstreamError) as info:
        backend.chat(MESSAGES, model="m")
    assert stub.calls() == 1
    message = str(info.value)
    assert str(status) in message
    assert KEY not in message and "sk-test" not in message


def test_the_deadline_is_respected(stub, backend):
    stub.delay = 3.0
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        backend.chat(MESSAGES, model="m", deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 0.5 + 0.4


def test_a_deadline_already_past_makes_no_call(stub, backend):
    with pytest.raises(DeadlineExceeded):
        backend.chat(MESSAGES, model="m", deadline=time.monotonic() - 1)
    assert stub.calls() == 0


def test_a_read_timeout_is_retried_then_reported(stub, make_backend):
    backend = make_backend(stub.base_url, read_timeout=0.2, max_retries=1)
    stub.delay = 1.0
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="did not answer"):
        backend.chat(MESSAGES, model="m")
    assert stub.calls() == 2
    assert time.monotonic() - started < 1.5


def test_a_dropped_connection_is_retried(stub, backend):
    stub.enqueue(StubReply(drop=True))
    assert backend.chat(MESSAGES, model="m").text == "hello"
    assert stub.calls() == 2


def test_refused_connection_is_backend_unavailable(refused_base_url, make_backend):
    backend = make_backend(refused_base_url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach the LLM backend") as refused:
        backend.chat(MESSAGES, model="m")
    assert time.monotonic() - started < 2.0
    assert "127.0.0.1" not in str(refused.value)  # the address only when the operator opts in
    shown = make_backend(refused_base_url, show_address=True)
    with pytest.raises(BackendUnavailable, match="cannot reach the LLM backend at 127.0.0.1:"):
        shown.chat(MESSAGES, model="m")


def test_malformed_body_is_an_upstream_error(stub, backend):
    stub.enqueue(StubReply(200, body="this is not json"))
    with pytest.raises(UpstreamError):
        backend.chat(MESSAGES, model="m")


def test_no_choices_is_an_upstream_error(stub, backend):
    stub.handler = lambda request: {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    with pytest.raises(UpstreamError, match="no choices"):
        backend.chat(MESSAGES, model="m")


def test_local_server_without_a_key(stub):
    backend = OpenAIBackend(base_url=stub.base_url, max_retries=0)
    try:
        assert backend.chat(MESSAGES, model="m").text == "hello"
        assert stub.requests[-1].headers["authorization"] == "Bearer unused"
    finally:
        backend.close()


def test_not_configured_is_backend_unavailable():
    with pytest.raises(BackendUnavailable):
        OpenAIBackend(api_key="", base_url="")
    with pytest.raises(BackendUnavailable):
        OpenAIBackend(api_key=None, base_url=None)


def test_one_client_serves_concurrent_calls(stub, backend):
    from concurrent.futures import ThreadPoolExecutor

    stub.delay = 0.3
    client = backend._client
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda _: backend.chat(MESSAGES, model="m").text, range(8)))
    assert texts == ["hello"] * 8
    assert backend._client is client
    assert time.monotonic() - started < 1.5
