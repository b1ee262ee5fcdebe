"""One question to the LLM judge whose answer is a single number: a level (holistic), the
number of a text (intruder). The yes/no judge of `scorer/judge.py` answers many texts a
prompt; these scorers ask one thing a prompt, so they share this instead.

The answer is read by the caller's parser (which says where in the reply the number
starts); an unreadable reply is asked again once, with the reason, and then reported,
never read as some default number. Where the backend returns top logprobs, the
probabilities of the allowed numbers at that position are read too (single-digit
numbers only: a number of two tokens has no distribution one token can give). A server
that refuses logprobs is asked again without them. Answers are cached by the exact
question.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from llm.backend import Completion
from llm.cache import NullCache
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer.judge import chat_with_logprobs
from scorer.simulators.prompts import check_deadline, rejection_note

MAX_ATTEMPTS = 2  # the first answer and one retry
TOP_LOGPROBS = 5


class Unreadable(ValueError):
    """The reply does not give the number asked for; the message says why."""


# A parser: the reply's text -> (the number, its offset in the text); raises Unreadable.
Reader = Callable[[str], tuple[int, int]]


@dataclass
class Answer:
    value: int | None  # None: no usable answer (see `reason`)
    reason: str | None = None
    # P(number) for each allowed number, from the top logprobs at the answer's position.
    distribution: dict[int, float] | None = None
    usage: Usage = field(default_factory=Usage)


def number_distribution(completion: Completion, offset: int, choices: Sequence[int]) -> dict[int, float] | None:
    """The probabilities of `choices` (single digits) as the token at `offset`, renormalised.

    None when the backend gave no logprobs, they do not spell the reply, the number
    does not start a token's text after a prefix the alternatives share, or no
    alternative is an allowed number.
    """
    logprobs = completion.logprobs
    if not logprobs or "".join(t.token for t in logprobs) != completion.text:
        return None
    if any(not 0 <= c <= 9 for c in choices):
        return None
    allowed = {str(c): c for c in choices}
    position = 0
    for item in logprobs:
        end = position + len(item.token)
        if position <= offset < end:
            prefix = item.token[: offset - position]
            mass: dict[int, float] = {}
            for alternative, logprob in item.top:
                if logprob is None or not math.isfinite(logprob) or not alternative.startswith(prefix):
                    continue
                value = allowed.get(alternative[len(prefix):].strip().strip("*`\"'.)"))
                if value is not None:
                    mass[value] = mass.get(value, 0.0) + math.exp(logprob)
            total = sum(mass.values())
            if total <= 0:
                return None
            return {c: mass.get(c, 0.0) / total for c in choices}
        position = end
    return None


def _with_note(messages: list[dict], reason: str | None) -> list[dict]:
    if not reason:
        return messages
    last = dict(messages[-1])
    last["content"] = last["content"] + rejection_note(reason)
    return [*messages[:-1], last]


def _cached(value) -> Answer | None:
    if not isinstance(value, dict) or not isinstance(value.get("value"), int) or isinstance(value["value"], bool):
        return None
    raw = value.get("distribution")
    distribution = None
    if isinstance(raw, dict):
        try:
            distribution = {int(k): float(p) for k, p in raw.items()}
        except (TypeError, ValueError):
            distribution = None
    return Answer(value=value["value"], distribution=distribution, usage=Usage(cache_hits=1))


def ask(
    judge,
    fmt: str,
    messages: list[dict],
    read: Reader,
    choices: Sequence[int],
    *,
    max_tokens: int = 16,
    deadline: float | None = None,
) -> Answer:
    """Ask `judge`'s model (an `LLMJudge`: its backend, model and cache) one question.

    `fmt` names the prompt and parser in the cache key. A reply that `read` cannot
    read, or whose number is not in `choices`, is asked again once; an UpstreamError
    (the backend's own retries spent) is not. BackendUnavailable and DeadlineExceeded
    are raised: nothing else can be asked either.
    """
    check_deadline(deadline)
    backend, model = judge.backend, judge.model
    cache = judge.cache if judge.cache is not None else NullCache()
    key = {
        "backend": getattr(backend, "name", type(backend).__name__),
        "base_url": getattr(backend, "base_url", ""),
        "model": model,
        "format": fmt,
        "messages": messages,
    }
    hit = _cached(cache.get(key))
    if hit is not None and hit.value in choices:
        return hit
    usage = Usage()
    options = {"top_logprobs": TOP_LOGPROBS}
    reason: str | None = None
    for _ in range(MAX_ATTEMPTS):
        check_deadline(deadline)
        try:
            completion = chat_with_logprobs(backend, _with_note(messages, reason), model, max_tokens, deadline, options)
        except UpstreamError as exc:
            return Answer(value=None, reason=f"backend error: {exc}", usage=usage)
        usage = usage + completion.usage
        try:
            value, offset = read(completion.text)
            if value not in choices:
                raise Unreadable(f"{value} is not one of {min(choices)}-{max(choices)}")
        except Unreadable as exc:
            reason = str(exc)
            continue
        distribution = number_distribution(completion, offset, choices)
        stored = None if distribution is None else {str(k): p for k, p in distribution.items()}
        cache.put(key, {"value": value, "distribution": stored})
        return Answer(value=value, distribution=distribution, usage=usage)
    tries = f"{MAX_ATTEMPTS} attempt{'s' if MAX_ATTEMPTS > 1 else ''}"
    return Answer(value=None, reason=f"unusable answer after {tries}: {reason}", usage=usage)
