"""`batched`: several texts per chat call, and an answer that lists only the active tokens.

The cost of a simulation is mostly what the model is shown and what it must
write back. This format pays the instructions once per batch, shows each token
once as a numbered line (`index<TAB>token`), and asks for one line per text with
only its non-zero tokens:

    1: 27=8 39=3
    2:
    3: 5=10

Most activations are zero, so the answer is a few tokens per text instead of an
echo of every token. Every text must get its line, even an empty one: a missing
line is a failure, not a text of zeros. A token index outside the text, a
duplicate or unreadable line, likewise; such texts are asked again once, in one
new batch, and reported as failed after that.

Batches run in parallel up to `concurrency`; the cache works per text, so a
text's answer is reused whatever batch it came in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from llm.backend import ChatBackend
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer.simulation import SequenceSimulation
from scorer.simulators.base import SimulationRun, TextFailure
from scorer.simulators.prompts import (
    FEW_SHOT_EXAMPLES,
    MAX_OUTPUT_TOKENS,
    QUOTED_NOTE,
    LLMSimulator,
    check_deadline,
    numbered_lines,
    parse_activation,
    quote_explanation,
    rejection_note,
    run_parallel,
    simulation_to_cache,
)

SYSTEM_PROMPT = """We're studying neurons in a neural network. Each neuron looks for certain things in text. Read the explanation of what the neuron does, then predict the neuron's activation on every token of each text: an integer from 0 (not firing) to 10 (firing strongly). Most activations are 0. """ + QUOTED_NOTE + """

Each text is shown as its tokens, one per line: the token's index, a tab, the token (a line break inside a token is written \\n).

Answer with one line per text, in the order given: the text's number, a colon, then index=activation for every token whose activation is above 0, separated by spaces. Leave out the zeros; a text with no active token gets its number and a colon alone. Write nothing else."""

_HEADER = re.compile(r"^\s*(?:text\s*)?(\d+)\s*:(.*)$", re.IGNORECASE)
_PAIR = re.compile(r"(\d+)\s*[=:]\s*(-?\d+(?:\.\d+)?)")
_EMPTY_REST = re.compile(r"^[\s,;]*(?:none|-|\(none\))?[\s,;.]*$", re.IGNORECASE)


def _question(explanation: str, texts: Sequence[Sequence[str]]) -> str:
    parts = [f"Explanation (quoted): {quote_explanation(explanation)}"]
    for number, tokens in enumerate(texts, start=1):
        parts.append(f"Text {number}:\n{numbered_lines(tokens)}")
    return "\n\n".join(parts)


def _answer_line(number: int, activations: Sequence[int]) -> str:
    pairs = " ".join(f"{i}={a}" for i, a in enumerate(activations) if a > 0)
    return f"{number}: {pairs}" if pairs else f"{number}:"


def build_messages(
    explanation: str, texts: Sequence[Sequence[str]], rejection: str | None = None
) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example in FEW_SHOT_EXAMPLES:
        messages.append(
            {"role": "user", "content": _question(example.explanation, [t.tokens for t in example.texts])}
        )
        answer = "\n".join(
            _answer_line(n, t.activations) for n, t in enumerate(example.texts, start=1)
        )
        messages.append({"role": "assistant", "content": answer})
    messages.append(
        {
            "role": "user",
            "content": _question(explanation, texts) + rejection_note(rejection),
        }
    )
    return messages


def parse_answer(text: str, lengths: Sequence[int]) -> list[list[float] | str]:
    """Per text of the batch, its activations (zeros where unlisted) or why it is unusable."""
    found: dict[int, list[float] | str] = {}
    for line in text.splitlines():
        header = _HEADER.match(line.strip().strip("`*"))
        if header is None:
            continue  # prose around the answer; a text without its line fails below
        number = int(header.group(1))
        if not 1 <= number <= len(lengths):
            continue
        if number in found:
            found[number] = "the answer had two lines for this text"
            continue
        found[number] = _parse_line(header.group(2), lengths[number - 1])
    missing = "the answer had no line for this text"
    return [found.get(n, missing) for n in range(1, len(lengths) + 1)]


def _parse_line(rest: str, n_tokens: int) -> list[float] | str:
    values = [0.0] * n_tokens
    if _EMPTY_REST.match(rest):
        return values
    if not _EMPTY_REST.match(_PAIR.sub(" ", rest)):
        return f"unreadable answer line {rest.strip()[:80]!r}"
    for pair in _PAIR.finditer(rest):
        index = int(pair.group(1))
        if index >= n_tokens:
            return f"token index {index} out of range for {n_tokens} tokens"
        values[index] = parse_activation(pair.group(2))
    return values


class _BackendFailure(str):
    """A text's reason that no re-ask can fix: the backend already retried."""


@dataclass
class _Outcome:
    values: list[list[float] | str]
    usage: Usage


class BatchedSimulator(LLMSimulator):
    name = "batched"
    version = "2"  # 2: the explanation shown as quoted data

    def __init__(
        self,
        backend: ChatBackend,
        model: str,
        cache: Any = None,
        concurrency: int = 8,
        *,
        batch_size: int = 10,
        max_batch_tokens: int = 2048,
        max_attempts: int = 2,
        max_output_tokens: int = MAX_OUTPUT_TOKENS,
    ) -> None:
        super().__init__(
            backend, model, cache, concurrency,
            max_attempts=max_attempts, max_output_tokens=max_output_tokens,
        )
        self.batch_size = max(1, int(batch_size))
        self.max_batch_tokens = max(1, int(max_batch_tokens))

    def simulate(
        self,
        explanation: str,
        texts: Sequence[Sequence[str]],
        *,
        deadline: float | None = None,
    ) -> SimulationRun:
        check_deadline(deadline)
        texts = [list(t) for t in texts]
        keys, simulations, todo, usage = self._from_cache(explanation, texts)

        reasons: dict[int, str] = {}
        rejection: str | None = None
        for attempt in range(self.max_attempts):
            if not todo:
                break
            batches = self._batches(todo, texts)
            outcomes = run_parallel(
                lambda batch: self._ask(explanation, [texts[i] for i in batch], rejection, deadline),
                batches,
                self.concurrency,
                deadline,
            )
            retry, problems = [], []
            for batch, outcome in zip(batches, outcomes):
                usage = usage + outcome.usage
                for i, result in zip(batch, outcome.values):
                    if isinstance(result, _BackendFailure):
                        reasons[i] = str(result)
                    elif isinstance(result, str):
                        reasons[i] = self._final_reason(result, attempt)
                        retry.append(i)
                        problems.append(result)
                    else:
                        simulations[i] = SequenceSimulation(tokens=texts[i], expected_activations=result)
                        self.cache.put(keys[i], simulation_to_cache(simulations[i]))
                        reasons.pop(i, None)
            todo = sorted(retry)
            rejection = "; ".join(dict.fromkeys(problems))[:300] if problems else None

        failures = [TextFailure(index=i, reason=reasons[i]) for i in sorted(reasons)]
        return SimulationRun(simulations=simulations, failures=failures, usage=usage)

    def _final_reason(self, reason: str, attempt: int) -> str:
        attempts = attempt + 1
        return f"unusable answer after {attempts} attempt{'s' if attempts > 1 else ''}: {reason}"

    def _batches(self, indices: list[int], texts: list[list[str]]) -> list[list[int]]:
        """Texts in order, at most `batch_size` and about `max_batch_tokens` tokens a batch."""
        batches: list[list[int]] = []
        current: list[int] = []
        size = 0
        for i in indices:
            n = len(texts[i])
            if current and (len(current) >= self.batch_size or size + n > self.max_batch_tokens):
                batches.append(current)
                current, size = [], 0
            current.append(i)
            size += n
        if current:
            batches.append(current)
        return batches

    def _ask(
        self,
        explanation: str,
        texts: list[list[str]],
        rejection: str | None,
        deadline: float | None,
    ) -> _Outcome:
        check_deadline(deadline)
        try:
            completion = self.backend.chat(
                build_messages(explanation, texts, rejection),
                model=self.model,
                temperature=0.0,
                # Room for every token active; a normal answer is far shorter.
                max_tokens=min(
                    self.max_output_tokens, 4 * sum(len(t) for t in texts) + 10 * len(texts) + 50
                ),
                deadline=deadline,
            )
        except UpstreamError as exc:
            # Already retried by the backend: these texts fail, the others go on.
            reason = _BackendFailure(f"backend error: {exc}")
            return _Outcome([reason] * len(texts), Usage())
        values = parse_answer(completion.text, [len(t) for t in texts])
        return _Outcome(values, completion.usage)
