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

from llm.answers import PromptEcho, Truncated, read_answer
from llm.backend import ChatBackend
from llm.errors import UpstreamError
from llm.tokens import count_message_tokens
from llm.usage import Usage
from scorer.simulation import SequenceSimulation
from scorer.simulators.base import SimulationRun, TextFailure
from scorer.simulators.prompts import (
    FEW_SHOT_EXAMPLES,
    MAX_OUTPUT_TOKENS,
    QUOTED_NOTE,
    BackendFailure,
    LLMSimulator,
    ParseError,
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

# Digit counts are bounded: a text number or token index of thousands of digits is none
# (and int() refuses it), a value of hundreds of digits is no activation.
_HEADER = re.compile(r"^\s*(?:text\s*)?(\d{1,6})\s*:(.*)$", re.IGNORECASE)
_PAIR = re.compile(r"(?<![\d.])(\d{1,7})\s*[=:]\s*(-?\d{1,6}(?:\.\d{1,12})?)(?![\d.])")
_EMPTY_REST = re.compile(r"^[\s,;]*(?:none|-|\(none\))?[\s,;.]*$", re.IGNORECASE)
# The question's layout (index, tab, token): an answer that has it echoes the question.
ECHO_MARKERS = re.compile(r"^[ \t]*\d{1,7}\t", re.MULTILINE)
CUT = "the answer was cut at the output limit before this text's line was complete"

# Output tokens, as cl100k counts them, of the densest answer: every token listed as `i=10`.
# A header `N:` and its line break, and per pair a space, the index (a token per three
# digits), `=` and `10`. Other tokenizers split digits finer: DENSE_MARGIN covers them.
DENSE_MARGIN = 1.25
ANSWER_SLACK = 16


def dense_answer_tokens(lengths: Sequence[int]) -> int:
    """The output tokens an answer needs when every token of every text is active."""
    total = 0
    for number, n_tokens in enumerate(lengths, start=1):
        total += 2 + -(-len(str(number)) // 3)
        total += sum(3 + -(-len(str(i)) // 3) for i in range(n_tokens))
    return total


def output_budget(lengths: Sequence[int]) -> int:
    """max_tokens that lets a batch with these text lengths be answered however dense."""
    return int(dense_answer_tokens(lengths) * DENSE_MARGIN) + ANSWER_SLACK


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


def parse_answer(text: str, lengths: Sequence[int], truncated: bool = False) -> list[list[float] | str]:
    """Per text of the batch, its activations (zeros where unlisted) or why it is unusable.

    `truncated`: the answer was cut at the output limit. Only lines that a line break
    ended are read; the text whose line was cut, and those after it, fail.
    """
    if truncated:
        text = text[: text.rfind("\n") + 1]
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
    missing = CUT if truncated else "the answer had no line for this text"
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
        try:
            values[index] = parse_activation(pair.group(2))
        except ParseError as exc:
            return f"token {index}: {exc}"
    return values


@dataclass
class _Outcome:
    values: list[list[float] | str]
    usage: Usage
    truncated: bool = False


class BatchedSimulator(LLMSimulator):
    name = "batched"
    # 2: the explanation shown as quoted data; 3: an answer cut at the output limit no longer
    # reads as zeros (entries cached before might).
    version = "3"

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
        budget = 1.0
        for attempt in range(self.max_attempts):
            if not todo:
                break
            batches = self._batches(todo, texts)
            outcomes = run_parallel(
                lambda batch: self._ask(explanation, [texts[i] for i in batch], rejection, deadline, budget),
                batches,
                self.concurrency,
                deadline,
            )
            retry, problems = [], []
            for batch, outcome in zip(batches, outcomes):
                usage = usage + outcome.usage
                for i, result in zip(batch, outcome.values):
                    if isinstance(result, BackendFailure):
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
            if any(outcome.truncated for outcome in outcomes):
                budget *= 2  # an answer was cut at the output limit: give the re-ask more room

        failures = [TextFailure(index=i, reason=reasons[i]) for i in sorted(reasons)]
        return SimulationRun(simulations=simulations, failures=failures, usage=usage)

    def _final_reason(self, reason: str, attempt: int) -> str:
        attempts = attempt + 1
        return f"unusable answer after {attempts} attempt{'s' if attempts > 1 else ''}: {reason}"

    def forecast(self, explanation: str, texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
        texts = [list(t) for t in texts]
        batches = [[texts[i] for i in batch] for batch in self._batches(list(range(len(texts))), texts)]
        prompts = sum(count_message_tokens(build_messages(explanation, batch)) for batch in batches)
        return len(batches), prompts, sum(self._answer_cap([len(t) for t in batch]) for batch in batches)

    def _answer_cap(self, lengths: Sequence[int], budget: float = 1.0) -> int:
        """Room for every token of the batch active (sized from it); a normal answer is far shorter."""
        return min(self.max_output_tokens, int(output_budget(lengths) * budget))

    def _batches(self, indices: list[int], texts: list[list[str]]) -> list[list[int]]:
        """Texts in order, at most `batch_size` and about `max_batch_tokens` tokens a batch,
        and few enough tokens that the densest answer fits the output cap."""
        batches: list[list[int]] = []
        current: list[int] = []
        size = 0
        for i in indices:
            n = len(texts[i])
            if current and (
                len(current) >= self.batch_size
                or size + n > self.max_batch_tokens
                or output_budget([len(texts[j]) for j in current] + [n]) > self.max_output_tokens
            ):
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
        budget: float = 1.0,
    ) -> _Outcome:
        check_deadline(deadline)
        lengths = [len(t) for t in texts]
        messages = build_messages(explanation, texts, rejection)
        try:
            completion = self.backend.chat(
                messages,
                model=self.model,
                temperature=0.0,
                max_tokens=self._answer_cap(lengths, budget),
                deadline=deadline,
            )
        except UpstreamError as exc:
            # Already retried by the backend: these texts fail, the others go on.
            reason = BackendFailure(f"backend error: {exc}")
            return _Outcome([reason] * len(texts), Usage())
        echo = PromptEcho.of_messages(
            messages,
            markers=ECHO_MARKERS,
            exact=(f"Explanation (quoted): {quote_explanation(explanation)}",),
        )
        read = read_answer(
            completion,
            lambda answer: parse_answer(answer.text, lengths, answer.truncated),
            echo=echo,
            truncated=Truncated.COMPLETE_LINES,
        )
        values = read.value if read.ok else [read.reason] * len(texts)
        truncated = read.truncated and any(v == CUT for v in values)
        return _Outcome(values, completion.usage, truncated)
