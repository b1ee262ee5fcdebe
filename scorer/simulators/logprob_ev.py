"""`logprob`: expected values from chat `top_logprobs`, one call per text.

The model answers `index:activation` for every token; at each activation it
generated, the backend's top alternatives give the probability of every value
0-10, and the prediction is the expected value over them (renormalised over the
values found) instead of the one value sampled. Needs a backend that returns
`top_logprobs` (OpenAI chat models, vLLM, llama.cpp's server).
"""
from __future__ import annotations

import bisect
import re

from llm.answers import PromptEcho
from llm.backend import Completion
from llm.tokens import count_message_tokens
from scorer.simulation import SequenceSimulation
from scorer.simulators.prompts import (
    FEW_SHOT_EXAMPLES,
    QUOTED_NOTE,
    LogprobSimulator,
    ParseError,
    digit_distribution,
    expected_value,
    numbered_lines,
    parse_activation,
    quote_explanation,
    rejection_note,
    require_top_logprobs,
)

SYSTEM_PROMPT = """We're studying neurons in a neural network. Each neuron looks for certain things in text. Read the explanation of what the neuron does, then predict the neuron's activation on every token of the text: an integer from 0 (not firing) to 10 (firing strongly). Most activations are 0. """ + QUOTED_NOTE + """

The text is shown as its tokens, one per line: the token's index, a tab, the token (a line break inside a token is written \\n).

Answer with one line per token, for every token in order: the index, a colon, the activation, like 0:0 then 1:7. Write nothing else."""

# Bounded digit counts: an index of thousands of digits is no index (and int() refuses it).
_LINE = re.compile(
    r"^[ \t]*(\d{1,7})[ \t]*[:=][ \t]*(-?\d{1,6}(?:\.\d{1,12})?)[ \t]*$", re.MULTILINE
)
# The question's layout (index, tab, token): an answer that has it echoes the question.
ECHO_MARKERS = re.compile(r"^[ \t]*\d{1,7}\t", re.MULTILINE)


def _question(explanation: str, tokens) -> str:
    return f"Explanation (quoted): {quote_explanation(explanation)}\n\nTokens:\n{numbered_lines(tokens)}"


def build_messages(explanation: str, tokens: list[str], rejection: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example in FEW_SHOT_EXAMPLES:
        for text in example.texts:
            messages.append({"role": "user", "content": _question(example.explanation, text.tokens)})
            answer = "\n".join(f"{i}:{a}" for i, a in enumerate(text.activations))
            messages.append({"role": "assistant", "content": answer})
    messages.append(
        {
            "role": "user",
            "content": _question(explanation, tokens) + rejection_note(rejection),
        }
    )
    return messages


def parse_answer(completion: Completion, tokens: list[str]) -> SequenceSimulation:
    """Expected values per token from the generated `index:value` lines and their logprobs."""
    n_tokens = len(tokens)
    logprobs = require_top_logprobs(
        completion,
        "the backend returned no top_logprobs for the chat answer; the 'logprob' format "
        "needs a server that does (use 'batched' or 'json' otherwise)",
    )
    # Offsets come from the tokens themselves, so text and logprobs cannot drift apart.
    starts, pieces, length = [], [], 0
    for item in logprobs:
        starts.append(length)
        pieces.append(item.token)
        length += len(item.token)
    text = "".join(pieces)

    by_index: dict[int, tuple[float, list[float], list[float]]] = {}
    for match in _LINE.finditer(text):
        index = int(match.group(1))
        if index >= n_tokens:
            raise ParseError(f"token index {index} out of range for {n_tokens} tokens")
        if index in by_index:
            raise ParseError(f"token index {index} answered twice")
        by_index[index] = _value_at(logprobs, starts, text, match)
    missing = [i for i in range(n_tokens) if i not in by_index]
    if missing:
        raise ParseError(
            f"{n_tokens - len(missing)} activations for {n_tokens} tokens "
            f"(first missing index {missing[0]})"
        )
    return SequenceSimulation(
        tokens=list(tokens),
        expected_activations=[by_index[i][0] for i in range(n_tokens)],
        distribution_values=[by_index[i][1] for i in range(n_tokens)],
        distribution_probabilities=[by_index[i][2] for i in range(n_tokens)],
    )


def _value_at(logprobs, starts, text, match) -> tuple[float, list[float], list[float]]:
    value_text = match.group(2)
    value_start = match.start(2)
    k = bisect.bisect_right(starts, value_start) - 1
    token_end = starts[k] + len(logprobs[k].token)
    # Text the token carries before the number (":", " "): its alternatives carry it too.
    prefix = text[starts[k] : value_start]
    distribution = {}
    # The distribution is about this value only if one token carries all of it
    # (a tokenizer that splits "10" into "1", "0" gives the first digit's odds).
    if token_end >= match.end(2):
        distribution = digit_distribution(logprobs[k].top, prefix)
    if not distribution:
        value = parse_activation(value_text)
        return value, [value], [1.0]
    return (
        expected_value(distribution),
        [float(v) for v in distribution],
        list(distribution.values()),
    )


class LogprobEVSimulator(LogprobSimulator):
    name = "logprob"
    version = "2"  # 2: the explanation shown as quoted data

    def _prompt_tokens(self, explanation: str, tokens: list[str]) -> int:
        return count_message_tokens(build_messages(explanation, tokens))

    def _request(self, explanation, tokens, rejection, deadline, *, budget=1.0) -> Completion:
        return self.backend.chat(
            build_messages(explanation, tokens, rejection),
            model=self.model,
            temperature=0.0,
            max_tokens=self._output_budget(6 * len(tokens) + 50, budget),
            top_logprobs=self.top_logprobs,
            deadline=deadline,
        )

    def _echo(self, explanation, tokens, rejection) -> PromptEcho:
        return PromptEcho.of_messages(build_messages(explanation, tokens, rejection), markers=ECHO_MARKERS)

    def _parse(self, completion: Completion, tokens: list[str]) -> SequenceSimulation:
        return parse_answer(completion, tokens)
