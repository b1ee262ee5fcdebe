"""A stand-in model for the hypothesis search, for the loopback stub (tests and bench/search.py).

Proposer prompts are answered from a script (one reply per round; the last one repeats, or
a callable decides from the request); judge prompts are answered by a planted rule: by
default `mentions_rule`, "yes" iff the text contains one of the condition's content words.
So a hypothesis naming the planted token is answered exactly as the neuron fires, and the
others as they happen to match. Anything else (simulation prompts) goes to `fallback`.
"""
from __future__ import annotations

import re
import threading
from typing import Callable, Sequence

from tests.stub_openai import SimulationResponder, StubReply, chat_body, error_body, unquote

PROPOSER_MARK = "proposing hypotheses"
JUDGE_MARK = "You decide whether texts match a description"

_RULE_STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it of on or the their this to with text texts "
    "mention mentions mentioned contain contains word words token tokens about some any appears "
    "appear there".split()
)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def condition_words(condition: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", condition.lower()) if w not in _RULE_STOPWORDS}


def mentions_rule(condition: str, text: str) -> bool | str:
    """True iff the text contains one of the condition's content words (plural-insensitive)."""
    words = condition_words(condition)
    return any(_stem(w) in words for w in re.findall(r"[a-z0-9]+", text.lower()))


def judge_items(question: str) -> tuple[str, list[tuple[int, str]]]:
    """The condition and the numbered texts of a judge prompt."""
    match = re.search(r"^Description[^:\n]*: (.*)$", question, re.MULTILINE)
    texts = [(int(n), t) for n, t in re.findall(r"^Text (\d+): (.*)$", question, re.MULTILINE)]
    return (unquote(match.group(1)) if match else ""), texts


class SearchResponder:
    def __init__(
        self,
        proposals: Sequence[str] | Callable[[object, int], str] = (),
        rule: Callable[[str, str], bool | str] = mentions_rule,
        fallback: Callable | None = None,
    ) -> None:
        self.proposals = proposals
        self.rule = rule
        self.fallback = fallback or SimulationResponder()
        self.proposer_prompts: list[str] = []
        self.judge_calls = 0
        self._lock = threading.Lock()

    def __call__(self, request):
        system = next((m.get("content") or "" for m in request.messages if m.get("role") == "system"), "")
        if request.is_chat and PROPOSER_MARK in system:
            with self._lock:
                k = len(self.proposer_prompts)
                self.proposer_prompts.append(request.last_user_message)
            if callable(self.proposals):
                return chat_body(request, self.proposals(request, k))
            if not self.proposals:
                return chat_body(request, "")
            return chat_body(request, self.proposals[min(k, len(self.proposals) - 1)])
        if request.is_chat and system.startswith(JUDGE_MARK):
            with self._lock:
                self.judge_calls += 1
            condition, texts = judge_items(request.last_user_message)
            lines = []
            for number, text in texts:
                answer = self.rule(condition, text)
                if answer is None:
                    continue  # no line at all for this text
                word = answer if isinstance(answer, str) else ("yes" if answer else "no")
                lines.append(f"{number}: {word}")
            return chat_body(request, "\n".join(lines))
        if self.fallback is not None:
            return self.fallback(request)
        return StubReply(status=500, body=error_body("unexpected prompt"))


def numbered(*hypotheses: str) -> str:
    return "\n".join(f"{i}. {h}" for i, h in enumerate(hypotheses, 1))
