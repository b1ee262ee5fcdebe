"""The ChatBackend for OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenRouter).

One `openai.OpenAI` client per backend, built from explicit arguments (nothing is
read from the environment here) and shared by every thread. The client's own
retries are off: this module retries, so that it can honour the request's
deadline, retry only what is worth retrying (429, 5xx, network errors; never a
bad key or a bad request) and map every failure to one of llm.errors.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import re
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import openai

from llm.answers import MAX_LOGPROB_ITEMS, as_count, as_finish_reason, as_model, as_text, as_token_logprob
from llm.backend import Completion
from llm.backends.capabilities import ALL as ALL_CAPABILITIES
from llm.errors import BackendUnavailable, DeadlineExceeded, UpstreamError
from llm.pricing import Prices, estimate_cost
from llm.tokens import count_message_tokens, count_tokens
from llm.usage import Usage

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers need no key, but the client insists on one.
PLACEHOLDER_KEY = "unused"
_WRITE_TIMEOUT = 10.0
_KEY_PATTERN = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")


class _Retryable(Exception):
    """One failed attempt that a later attempt may fix."""

    def __init__(self, final: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final  # what to raise if no attempt is left
        self.retry_after = retry_after


class OpenAIBackend:
    """Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, OpenRouter) through the
    official client. It declares every capability; `capabilities` narrows that for a server
    that lacks some (LLM_CAPABILITIES), so the request is refused instead of failing upstream."""

    name = "openai"
    capabilities: frozenset[str] = ALL_CAPABILITIES

    def __init__(
        self,
        *,
        api_key: str | None = "",
        base_url: str | None = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
        prices: Prices | None = None,
        capabilities: frozenset[str] | None = None,
        show_address: bool = False,
    ) -> None:
        if not api_key and not base_url:
            raise BackendUnavailable(
                "the OpenAI-compatible backend is not configured: set OPENAI_API_KEY or OPENAI_BASE_URL"
            )
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._prices = prices or {}
        if capabilities:
            self.capabilities = frozenset(capabilities)
        # What error bodies call the server: its address only when the operator opts in
        # (SHOW_BACKEND_ADDRESS); the logs always name it.
        self.label = f"the LLM backend at {self.host}" if show_address else "the LLM backend"
        self._secret = api_key
        self._client = client or openai.OpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=self.base_url,
            max_retries=0,
            timeout=openai.Timeout(read_timeout, connect=connect_timeout),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> "OpenAIBackend":
        return cls(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            max_retries=settings.llm_max_retries,
            prices=settings.prices,
            capabilities=settings.llm_capabilities_set,
            show_address=settings.show_backend_address,
        )

    @property
    def host(self) -> str:
        """The server's address without credentials, for messages."""
        parts = urlsplit(self.base_url)
        if not parts.hostname:
            return self.base_url
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname

    def close(self) -> None:
        self._client.close()

    # -- the two calls ----------------------------------------------------------

    def chat(
        self,
        messages: list[dict],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        json_mode: bool = False,
        top_logprobs: int | None = None,
        deadline: float | None = None,
    ) -> Completion:
        messages = [{**m, "content": sendable(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if top_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = top_logprobs
        response = self._with_retries(
            lambda timeout: self._client.chat.completions.create(**kwargs, timeout=timeout), deadline
        )
        choice = _first_choice(response)
        message = getattr(choice, "message", None)
        text = as_text(getattr(message, "content", None) if message is not None else None)
        logprobs = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if isinstance(content, list):
            logprobs = [
                as_token_logprob(
                    getattr(item, "token", None), getattr(item, "logprob", None), getattr(item, "top_logprobs", None)
                )
                for item in content[: MAX_LOGPROB_ITEMS + 1]
            ]
        usage = self._usage(
            response, model, lambda: count_message_tokens(messages), lambda: count_tokens(text)
        )
        return Completion(
            text=text,
            usage=usage,
            logprobs=logprobs,
            model=as_model(getattr(response, "model", None)),
            finish_reason=as_finish_reason(getattr(choice, "finish_reason", None)),
        )

    def complete(
        self,
        prompt: str,
        *,
        model: str,
        max_tokens: int = 0,
        echo: bool = True,
        logprobs: int = 5,
        deadline: float | None = None,
    ) -> Completion:
        prompt = sendable(prompt)
        kwargs: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "echo": echo,
            "logprobs": logprobs,
            "temperature": 0.0,
        }
        response = self._with_retries(
            lambda timeout: self._client.completions.create(**kwargs, timeout=timeout), deadline
        )
        choice = _first_choice(response)
        text = as_text(getattr(choice, "text", None))
        token_logprobs = None
        lp = getattr(choice, "logprobs", None)
        tokens = getattr(lp, "tokens", None) if lp is not None else None
        if isinstance(tokens, list) and tokens:
            values = getattr(lp, "token_logprobs", None)
            values = values if isinstance(values, list) else []
            tops = getattr(lp, "top_logprobs", None)
            tops = tops if isinstance(tops, list) else []
            token_logprobs = []
            # The first prompt token has no logprob (nothing precedes it): NaN, as for any missing one.
            for i, token in enumerate(tokens[: MAX_LOGPROB_ITEMS + 1]):
                token_logprobs.append(
                    as_token_logprob(
                        token,
                        values[i] if i < len(values) else None,
                        tops[i] if i < len(tops) else None,
                    )
                )
        generated = text[len(prompt):] if echo and text.startswith(prompt) else text
        usage = self._usage(response, model, lambda: count_tokens(prompt), lambda: count_tokens(generated))
        return Completion(
            text=text,
            usage=usage,
            logprobs=token_logprobs,
            model=as_model(getattr(response, "model", None)),
            finish_reason=as_finish_reason(getattr(choice, "finish_reason", None)),
        )

    def embed(self, texts: Any, model: str, deadline: float | None = None) -> Any:
        """The embeddings endpoint: one unit-length float32 row per text (llm.backend.Embeddings).

        Blank texts are not sent (the endpoint refuses empty input) and get an
        all-zero row, as with the local embedder. Floats are asked for
        explicitly: not every compatible server decodes base64 embeddings.
        """
        # Imported here so that this method is the whole of the embeddings change to this file.
        import numpy as np

        from llm.backend import Embeddings

        texts = [sendable(str(t)) for t in texts]
        sent = [i for i, t in enumerate(texts) if t.strip()]
        rows: list[Any] = [None] * len(texts)
        usage = Usage()
        served_by = None
        chunk = 256  # inputs per call: well under every server's limit
        for start in range(0, len(sent), chunk):
            part = sent[start : start + chunk]
            inputs = [texts[i] for i in part]
            response = self._with_retries(
                lambda timeout: self._client.embeddings.create(
                    model=model, input=inputs, encoding_format="float", timeout=timeout
                ),
                deadline,
            )
            try:
                data = sorted(getattr(response, "data", None) or [], key=lambda d: int(d.index))
            except (TypeError, ValueError, AttributeError, OverflowError):
                raise UpstreamError(f"{self.label} returned embeddings of an unusable shape") from None
            if len(data) != len(inputs):
                raise UpstreamError(
                    f"{self.label} returned {len(data)} embeddings for {len(inputs)} texts"
                )
            for i, item in zip(part, data):
                rows[i] = item.embedding
            served_by = getattr(response, "model", None) or served_by
            # An embeddings answer reports prompt tokens only; nothing is generated.
            tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
            estimated = tokens is None
            if estimated:
                tokens = _estimate(lambda: sum(count_tokens(t) for t in inputs))
            call = Usage(llm_calls=1, prompt_tokens=int(tokens), estimated=estimated)
            call.cost_usd = estimate_cost(call, model, self._prices)
            usage = usage + call
        width = len(rows[sent[0]]) if sent else 0
        vectors = np.zeros((len(texts), width), dtype=np.float32)
        for i in sent:
            try:
                row = np.asarray(rows[i], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise UpstreamError(f"{self.label} returned an unusable embedding") from None
            if row.shape != (width,) or width == 0 or not np.all(np.isfinite(row)):
                raise UpstreamError(f"{self.label} returned an unusable embedding")
            norm = np.linalg.norm(row)
            vectors[i] = row / norm if norm > 0 else row
        return Embeddings(vectors=vectors, usage=usage, model=served_by)

    # -- retries and error mapping ----------------------------------------------

    def _with_retries(self, call: Callable[[Any], Any], deadline: float | None) -> Any:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            timeout = self._attempt_timeout(deadline)
            try:
                return self._attempt(call, timeout, deadline)
            except _Retryable as failure:
                if attempt == attempts - 1:
                    raise failure.final from None
                delay = self._delay(attempt, failure.retry_after)
                if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
                    raise UpstreamError(
                        f"{failure.final} and asked to retry after {failure.retry_after:.0f} s, "
                        f"longer than this service waits ({self.max_retry_after:.0f} s)"
                    ) from None
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise DeadlineExceeded(
                        f"the request's deadline passes before the next retry ({failure.final})"
                    ) from None
                log.info("retrying %s in %.2f s: %s", self.host, delay, failure.final)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt_timeout(self, deadline: float | None) -> openai.Timeout:
        read = self.read_timeout
        connect = self.connect_timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("the request's deadline passed before the backend was called")
            read = min(read, left)
            connect = min(connect, left)
        return openai.Timeout(read, connect=connect, write=min(_WRITE_TIMEOUT, read), pool=connect)

    def _attempt(self, call: Callable[[Any], Any], timeout: Any, deadline: float | None) -> Any:
        try:
            return call(timeout)
        except openai.APITimeoutError as exc:
            if deadline is not None and time.monotonic() >= deadline - 0.01:
                raise DeadlineExceeded(
                    f"the request's deadline passed while waiting for {self.label}"
                ) from None
            if _caused_by_connect(exc):
                raise _Retryable(
                    BackendUnavailable(f"cannot connect to {self.label}: connect timeout")
                ) from None
            raise _Retryable(
                UpstreamError(
                    f"{self.label} did not answer within {self.read_timeout:g} s"
                )
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            reason = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            raise _Retryable(
                BackendUnavailable(f"cannot reach {self.label} ({self._redact(reason)})")
            ) from None
        except openai.APIStatusError as exc:
            raise self._status_failure(exc) from None
        except RecursionError:
            raise UpstreamError(f"unusable answer from {self.label}: JSON nested too deeply") from None
        except (openai.OpenAIError, ValueError, TypeError, AttributeError, ArithmeticError, LookupError) as exc:
            # ValueError: a body that is not JSON, or JSON of the wrong shape (or a number of
            # more digits than Python converts); OverflowError: an integer too large for the
            # float the client's models coerce it to; the others: a body whose shape the
            # client's models do not expect.
            raise UpstreamError(
                f"unusable answer from {self.label}: {self._redact(str(exc))[:300]}"
            ) from None

    def _status_failure(self, exc: Any) -> Exception:
        status = exc.status_code
        if status in (401, 403):
            # The body of an auth error may quote part of the key: leave it out.
            return UpstreamError(
                f"{self.label} rejected the credentials (HTTP {status}); "
                "check OPENAI_API_KEY"
            )
        detail = self._redact(_error_detail(exc))[:300]
        message = f"{self.label} answered HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429 or status >= 500:
            return _Retryable(UpstreamError(message), _retry_after(exc.response.headers))
        return UpstreamError(message)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server's word, with a little spread so clients don't return in lockstep.
            return max(0.0, retry_after) * (1.0 + 0.1 * random.random())
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return ceiling * (0.5 + 0.5 * random.random())

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return _KEY_PATTERN.sub("[redacted]", text)

    def _usage(
        self,
        response: Any,
        model: str,
        prompt_estimate: Callable[[], int],
        completion_estimate: Callable[[], int],
    ) -> Usage:
        usage = getattr(response, "usage", None)
        # A count the server did not report, or reported as no believable number, is estimated.
        prompt = as_count(getattr(usage, "prompt_tokens", None)) if usage is not None else None
        completion = as_count(getattr(usage, "completion_tokens", None)) if usage is not None else None
        estimated = False
        if prompt is None:
            prompt, estimated = _estimate(prompt_estimate), True
        if completion is None:
            completion, estimated = _estimate(completion_estimate), True
        call = Usage(
            llm_calls=1,
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cached_prompt_tokens=_cached_tokens(usage, int(prompt)),
            estimated=estimated,
        )
        call.cost_usd = estimate_cost(call, model, self._prices)
        return call


def sendable(text: str) -> str:
    """The text as a request body can carry it: a lone surrogate (JSON lets a caller send
    "\\ud800" in a token) cannot be encoded as UTF-8, so it is written as the escape text."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def _estimate(count: Callable[[], int]) -> int:
    try:
        return count()
    except Exception as exc:  # no tokenizer: a rough figure beats none
        log.warning("token estimate without tiktoken (%s)", exc)
        return 0


def _cached_tokens(usage: Any, prompt_tokens: int) -> int:
    """Prompt tokens served from the provider's prefix cache (`prompt_tokens_details.cached_tokens`,
    as OpenAI and vLLM report them); 0 when the answer does not say."""
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    if isinstance(details, dict):
        cached = details.get("cached_tokens")
    else:
        cached = getattr(details, "cached_tokens", None)
    if isinstance(cached, bool) or not isinstance(cached, (int, float)) or not math.isfinite(cached):
        return 0
    return min(max(0, int(cached)), max(0, prompt_tokens))


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise UpstreamError("the LLM backend returned no choices")
    return choices[0]


def _caused_by_connect(exc: BaseException) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if type(cause).__name__ == "ConnectTimeout":
            return True
        cause = cause.__cause__
    return False


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or "")
        return str(error)
    if isinstance(body, str):
        return body
    return ""


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
