"""Explaining a neuron: select and scale its texts, build the style's prompt, ask a backend, clean the answer.

With no backend the offline explainer answers. A dry run stops after the prompt: it
returns the exact messages and their token count without calling anything.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

from core.names import OFFLINE  # noqa: F401  (re-exported)
from explainer.errors import ExplainerError, PromptTooLong
from explainer.fewshot import FewShotExample, load_examples
from explainer.offline import explain_offline
from explainer.parse import clean_explanation
from explainer.records import (
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WINDOW,
    ActivationRecord,
    as_records,
    neuron_max,
    normalize,
    select_top,
    trim_to_window,
)
from explainer.styles import DEFAULT_STYLE, PREFIX, ExplainerStyle, get_style
from explainer.styles.base import HIGH_LIST_LABEL
from llm.answers import Answer, PromptEcho, Truncated, cut_at_last_line, read_answer
from llm.backend import ChatBackend, Completion
from llm.errors import DeadlineExceeded, UpstreamError
from llm.tokens import count_message_tokens
from llm.usage import Usage

DEFAULT_MAX_TOKENS = 60  # the paper's limit; an explanation is one short phrase
DEFAULT_TEMPERATURE = 1.0  # the paper's; best-of-n needs varied samples anyway
ATTEMPTS_PER_CANDIDATE = 2  # an empty or unusable reply is retried once

# When over the token budget: windows tried once every text is cut to DEFAULT_WINDOW
# and only the strongest text is left.
_LAST_RESORT_WINDOWS = (32, 16)


@dataclass
class ExplainResult:
    explanation: str | None  # the first usable candidate; None for a dry run
    candidates: list[str]  # distinct cleaned explanations, in the order they came
    style: str
    backend: str  # "offline" or the backend's name
    model: str | None  # the model that answered (None offline)
    usage: Usage = field(default_factory=Usage)
    messages: list[dict] = field(default_factory=list)  # the prompt; empty for the offline explainer
    prompt_tokens: int | None = None  # tiktoken count of `messages`, per call
    dry_run: bool = False
    texts_shown: int = 0  # texts in the prompt after selection and truncation
    max_activation: float = 0.0  # the activation that maps to 10
    threshold: int = DEFAULT_THRESHOLD

    def to_dict(self) -> dict:
        return {**asdict(self), "usage": self.usage.to_dict()}


def explain(
    records: Iterable[ActivationRecord | Mapping],
    *,
    style: str = DEFAULT_STYLE,
    backend: ChatBackend | None = None,
    model: str | None = None,
    n: int = 1,
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    threshold: int = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    max_activation: float | None = None,
    token_budget: int | None = None,
    deadline: float | None = None,
    dry_run: bool = False,
    fewshot: Sequence[FewShotExample] | None = None,
) -> ExplainResult:
    """Explain the neuron behind `records` (records or `{tokens, values}` dicts).

    `max_activation` (> 0) fixes the value that maps to 10; otherwise the maximum over
    all `records`. The prompt shows the `top_k` strongest distinct texts; `token_budget`
    caps its tokens (texts are trimmed, then dropped; PromptTooLong if even one short
    window does not fit). `deadline` is a `time.monotonic()` instant.

    With a backend, `n` samples are drawn (each unusable reply retried once) and the
    distinct usable ones become `candidates`; rank them with best_of_n.rank_candidates.
    Without one, the offline explainer gives its single deterministic answer (`n` has
    nothing to vary). A dry run builds the LLM prompt either way and calls nothing.

    Raises UnknownStyle, NothingToExplain, PromptTooLong or ValueError for bad input
    (HTTP 400), UpstreamError when no sample is usable (502), DeadlineExceeded (504);
    the backend's own errors pass through.
    """
    chosen = get_style(style)
    if n < 1:
        raise ExplainerError("n must be at least 1")
    if not 1 <= threshold <= 10:
        raise ExplainerError("threshold must be between 1 and 10")
    records = as_records(records)
    if not records:
        raise ExplainerError("at least one text is needed")
    scale = neuron_max(records, max_activation)
    top = select_top(records, top_k)
    examples = load_examples() if fewshot is None else tuple(fewshot)
    backend_name = backend.name if backend is not None else OFFLINE
    if backend is not None and not dry_run and not model:
        raise ExplainerError("a model name is needed to explain with an LLM backend")

    if backend is None and not dry_run:
        text = explain_offline(top, max_activation=scale, threshold=threshold)
        return ExplainResult(
            explanation=text, candidates=[text], style=chosen.name, backend=OFFLINE, model=None,
            texts_shown=len(top), max_activation=scale, threshold=threshold,
        )

    messages, shown, tokens = build_prompt(chosen, top, scale, threshold, examples, token_budget)
    result = ExplainResult(
        explanation=None, candidates=[], style=chosen.name, backend=backend_name, model=model,
        messages=messages, prompt_tokens=tokens, dry_run=dry_run, texts_shown=shown,
        max_activation=scale, threshold=threshold,
    )
    if dry_run:
        return result

    seen: set[str] = set()
    for _ in range(n):
        for _attempt in range(ATTEMPTS_PER_CANDIDATE):
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded("the deadline passed while explaining")
            completion = backend.chat(
                messages, model=model, temperature=temperature, max_tokens=max_tokens, deadline=deadline
            )
            result.usage = result.usage + _call_usage(completion.usage)
            if completion.model and result.model == model:
                result.model = completion.model
            text = read_explanation(completion, messages)
            if text is not None:
                if text.casefold() not in seen:
                    seen.add(text.casefold())
                    result.candidates.append(text)
                break
    if not result.candidates:
        raise UpstreamError(
            f"the explainer model returned no usable explanation (each sample retried once, "
            f"{result.usage.llm_calls + result.usage.cache_hits} replies)"
        )
    result.explanation = result.candidates[0]
    return result


# The explainer prompt's own layout, which no explanation has: a neuron's heading line, an
# excerpt's label, the original style's markers and token lines, the high-token list.
ECHO_MARKERS = re.compile(
    r"^[ \t]*(?:neuron \d{1,4}[ \t]*$|excerpt \d{1,4}:|<start>|<end>|[^\t\n]*\t\d{1,2}[ \t]*$|"
    + re.escape(HIGH_LIST_LABEL)
    + ")",
    re.IGNORECASE | re.MULTILINE,
)


def read_explanation(completion: Completion, messages: list[dict]) -> str | None:
    """The cleaned explanation in an explainer's answer, or None when it has none: the
    answer repeats the prompt, runs away, or was cut before its first line ended."""

    def parse(answer: Answer) -> str | None:
        text = answer.text
        if answer.truncated:
            # Cut at the output limit: only a first line that a line break ended is whole.
            text = cut_at_last_line(text.lstrip())
        return clean_explanation(text, PREFIX)

    read = read_answer(
        completion,
        parse,
        echo=PromptEcho.of_messages(messages, allowed=(PREFIX,), markers=ECHO_MARKERS),
        truncated=Truncated.COMPLETE_LINES,
        what="explanation",
    )
    return read.value if read.ok else None


def build_prompt(
    style: ExplainerStyle,
    top: Sequence[ActivationRecord],
    scale: float,
    threshold: int,
    fewshot: Sequence[FewShotExample],
    token_budget: int | None = None,
) -> tuple[list[dict], int, int]:
    """The messages, how many texts they show, and their token count.

    Over budget, the prompt loses detail in this order: every text cut to a window of
    DEFAULT_WINDOW tokens around its maximum; the weakest texts, one at a time, down to
    one; that last text cut to shorter windows. The few-shot examples are kept: without
    them the layout is not taught.
    """
    plans: list[list[ActivationRecord]] = [list(top)]
    if token_budget is not None:
        trimmed = [trim_to_window(r, DEFAULT_WINDOW) for r in top]
        plans += [trimmed[:k] for k in range(len(trimmed), 0, -1)]
        plans += [[trim_to_window(top[0], w)] for w in _LAST_RESORT_WINDOWS]
    smallest = None
    for shown in plans:
        messages = style.messages(normalize(shown, scale), threshold, fewshot)
        tokens = count_message_tokens(messages)
        if token_budget is None or tokens <= token_budget:
            return messages, len(shown), tokens
        smallest = tokens if smallest is None else min(smallest, tokens)
    raise PromptTooLong(
        f"the prompt needs at least {smallest} tokens (one text of {_LAST_RESORT_WINDOWS[-1]} "
        f"tokens with the few-shot examples); the budget is {token_budget}"
    )


def _call_usage(usage: Usage | None) -> Usage:
    """A completion's usage, counting the call when the backend did not (a cache hit is not a call)."""
    usage = usage or Usage()
    if usage.llm_calls == 0 and usage.cache_hits == 0:
        usage = usage + Usage(llm_calls=1)
    return usage
