"""The explainer-style interface and what every layout shares.

A style only decides how one neuron's texts are laid out (`render`) and says so in one
sentence (`layout`); the message sequence around it is the same for every style:

    system     what the task is, this style's layout, what counts as a high token
    user       neuron 1 (a few-shot example), ending with the explanation prefix
    assistant  its reference explanation
    ...        (one pair per few-shot example)
    user       the target neuron, ending with the explanation prefix -> the model completes it
"""
from __future__ import annotations

import re
from typing import Callable, Protocol, Sequence

from core.text import render_token  # noqa: F401  (re-exported)
from explainer.fewshot import FewShotExample
from explainer.records import NormalizedRecord

# The sentence an explanation completes: the field's convention, which keeps explanations
# comparable with those of other tools and with the simulators that read them.
PREFIX = "the main thing this neuron does is find"

HIGH_LIST_LABEL = "Highly activating tokens:"

_SPLIT_SPACE = re.compile(r"^(\s*)(.*?)(\s*)$", re.S)


class ExplainerStyle(Protocol):
    name: str

    def messages(
        self,
        records: Sequence[NormalizedRecord],
        threshold: int,
        fewshot: Sequence[FewShotExample] = (),
    ) -> list[dict]:
        """The chat messages asking for an explanation of the neuron behind `records`."""
        ...


def plain_text(record: NormalizedRecord) -> str:
    return "".join(render_token(t) for t in record.tokens)


def highlighted_text(record: NormalizedRecord, threshold: int) -> str:
    """The text with each high token in square brackets.

    A token's leading/trailing whitespace stays outside its brackets (" fox" -> " [fox]"),
    so the text reads as written; a whitespace-only token is bracketed whole ("[\\n]").
    """
    parts = []
    for i, token in enumerate(record.tokens):
        if not record.is_high(i, threshold):
            parts.append(render_token(token))
            continue
        lead, core, trail = _SPLIT_SPACE.match(token).groups()
        if core:
            parts.append(f"{render_token(lead)}[{render_token(core)}]{render_token(trail)}")
        else:
            parts.append(f"[{render_token(token)}]")
    return "".join(parts)


def list_form(token: str) -> str:
    """A token as a list item: without surrounding whitespace, unless it is only whitespace;
    in double quotes when it holds a comma, which would otherwise split the list."""
    item = render_token(token.strip() or token)
    return f'"{item}"' if "," in item else item


def high_tokens(records: Sequence[NormalizedRecord], threshold: int) -> list[tuple[str, int]]:
    """Distinct high tokens (in list form) with their largest value, strongest first,
    ties in order of first appearance."""
    best: dict[str, int] = {}
    for record in records:
        for i in record.high_indices(threshold):
            key = list_form(record.tokens[i])
            best[key] = max(best.get(key, 0), record.values[i])
    order = {key: n for n, key in enumerate(best)}
    return sorted(best.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def excerpt_lines(texts: Sequence[str]) -> str:
    return "\n".join(f"Excerpt {n}: {text.lstrip(' ')}" for n, text in enumerate(texts, 1))


def highlights_then_list(
    records: Sequence[NormalizedRecord], threshold: int, show: Callable[[str, int], str]
) -> str:
    """The highlighted excerpts, then a line listing the high tokens, each as `show(token, value)`."""
    listed = ", ".join(show(token, value) for token, value in high_tokens(records, threshold))
    return (
        f"{excerpt_lines([highlighted_text(r, threshold) for r in records])}\n\n"
        f"{HIGH_LIST_LABEL} {listed}"
    )


class PromptStyle:
    """Shared message building; a subclass sets `name` and `layout` and implements `render`."""

    name = ""
    layout = ""

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        raise NotImplementedError

    def system_prompt(self, threshold: int) -> str:
        return (
            "We study the units of a language model (neurons, or latents of a sparse "
            "autoencoder). Each unit responds to something particular in text, and you will "
            "see the excerpts on which some units are most active. "
            f"{self.layout} "
            "Line breaks and tabs inside an excerpt are written as \\n and \\t. "
            "Activations are measured from 0 to 10, where 10 is the unit's strongest; "
            f"a token is highly activating when it scores {threshold} or more. "
            "For each unit, finish the last sentence of the message with a short phrase "
            "naming what the unit responds to. Name the shared pattern (a kind of word, a "
            "topic, a position such as the word after a given one) instead of listing the "
            "examples, and reply with that phrase only, on one line."
        )

    def neuron_message(self, number: int, records: Sequence[NormalizedRecord], threshold: int) -> str:
        return (
            f"Neuron {number}\n{self.render(records, threshold)}\n\n"
            f"Explanation of neuron {number}: {PREFIX}"
        )

    def messages(
        self,
        records: Sequence[NormalizedRecord],
        threshold: int,
        fewshot: Sequence[FewShotExample] = (),
    ) -> list[dict]:
        messages = [{"role": "system", "content": self.system_prompt(threshold)}]
        for number, example in enumerate(fewshot, 1):
            messages.append(
                {"role": "user", "content": self.neuron_message(number, example.normalized(), threshold)}
            )
            messages.append({"role": "assistant", "content": example.explanation})
        messages.append(
            {"role": "user", "content": self.neuron_message(len(fewshot) + 1, records, threshold)}
        )
        return messages
