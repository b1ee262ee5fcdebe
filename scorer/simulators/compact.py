"""`compact`: each text shown once as running text, and an answer that quotes only the active tokens.

`batched` shows one line per token (`index<TAB>token`), which costs about three
prompt tokens per token of text. This format shows each text once, on one line,
as it reads, with a `|` only where two tokens meet without a space or line
break between them (`Reg|iment`, `here|."`):

    Text 1: Grab a whisk and the frying pan before you start|.
    Text 2: Put the pan on the stove, then rinse the pan|s|.

and asks for one line per text naming only the tokens above zero, each quoted
as it is shown (without its leading space), with `#k` for the k-th of several
tokens that read the same:

    1: "whisk"=9, "frying"=4, "pan"=10
    2: "pan"#1=10, "stove"=5, "pan"#2=10

Reading the answer is strict: every quote must name exactly one token of its
text. A quote that names no token, one that reads the same as several tokens
without `#k`, a `#k` past the last occurrence, two different values for one
token, a missing or doubled line, or a line cut by the output limit makes that
text a failure (asked again once, then reported), never a guess and never
zeros. A token that is only spaces cannot be quoted and is predicted 0.

The prompt puts what every call shares first (instructions, the worked
example), then the texts, and the explanation last, so that a provider's prefix
cache serves the instructions always and the texts too when several
explanations are scored on the same texts.

Batches are sized by a budget of text tokens (SIMULATOR_BATCH_TOKENS), not a
count, so the standard 20 x 64 request is one call; a text longer than the
budget is shown in consecutive parts, each a numbered text of its own, and
fails if any part does.
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
    ExampleText,
    LLMSimulator,
    ParseError,
    check_deadline,
    clean_explanation,
    parse_activation,
    quote_explanation,
    rejection_note,
    render_token,
    run_parallel,
    simulation_to_cache,
)

DEFAULT_BATCH_TOKENS = 2048
SEPARATOR = "|"

SYSTEM_PROMPT = """We're studying neurons in a neural network. Each neuron looks for certain things in text. Given an explanation of what a neuron does, predict its activation on every token of each text: an integer from 0 (not firing) to 10 (firing strongly). Most activations are 0. """ + QUOTED_NOTE + """

Each text is on one line after its number. Tokens are separated by spaces, by line breaks (written \\n) or by | (a | inside a token is written \\|).

Answer with one line per text, in the order given: the text's number and a colon, then every token whose activation is above 0 as "token"=activation, separated by commas. Quote the token exactly as shown, without its leading space. If the same token appears more than once in the text, add # and which one it is: "pan"#2=10 is the second "pan". Leave out the zeros; a text with no active token gets its number and colon alone. Write nothing else."""


# The shared worked example (the kitchen neuron of prompts.FEW_SHOT_EXAMPLES), plus one text
# written for this format: with it the exchange shows every shape of the answer, a split
# word, a repeated token with #k, and a text with nothing active.
_EXAMPLE_EXPLANATION = FEW_SHOT_EXAMPLES[0].explanation
_EXAMPLE_TEXTS = (
    *FEW_SHOT_EXAMPLES[0].texts,
    ExampleText(
        ("Put", " the", " pan", " on", " the", " stove", ",", " wipe", " the", " spat", "ula",
         " and", " rinse", " the", " pan", "."),
        (0, 0, 10, 0, 0, 5, 0, 0, 0, 7, 8, 0, 0, 0, 10, 0),
    ),
)


# -- layout -------------------------------------------------------------------------


def _joined(left: str, right: str) -> bool:
    """Whether two tokens meet with no space or line break between them."""
    return bool(left) and bool(right) and not left[-1].isspace() and not right[0].isspace()


def shown(token: str) -> str:
    """A token as this layout writes it: `render_token`, with a literal | written \\| so that a
    bare | is always a join between tokens."""
    return render_token(token).replace(SEPARATOR, "\\" + SEPARATOR)


def render_text(tokens: Sequence[str]) -> str:
    """A text on one line as it reads, `|` where two tokens meet without whitespace."""
    out: list[str] = []
    previous = ""
    for token in tokens:
        if _joined(previous, token):
            out.append(SEPARATOR)
        out.append(shown(token))
        previous = token or previous
    return "".join(out)


def token_key(token: str) -> str:
    """How an answer names a token: as shown, without surrounding spaces ('' for spaces only)."""
    return shown(token).strip()


def references(tokens: Sequence[str]) -> list[str]:
    """Per token, the shortest reference that names it alone: `"key"`, or `"key"#k` when
    k tokens read the same; '' for a token that cannot be named. (The inverse of `resolve`.)"""
    keys = [token_key(t) for t in tokens]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        if not key:
            out.append("")
        elif counts[key] == 1:
            out.append(_quote(key))
        else:
            out.append(f"{_quote(key)}#{seen[key]}")
    return out


def _quote(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def _question(explanation: str, texts: Sequence[Sequence[str]]) -> str:
    lines = [f"Text {n}: {render_text(t)}" for n, t in enumerate(texts, start=1)]
    return "\n".join(lines) + f"\n\nExplanation (quoted): {quote_explanation(explanation)}"


def answer_line(number: int, tokens: Sequence[str], activations: Sequence[float]) -> str:
    """The answer line a perfect model writes for one text."""
    refs = references(tokens)
    items = [f"{refs[i]}={_number(a)}" for i, a in enumerate(activations) if a > 0 and refs[i]]
    return f"{number}: {', '.join(items)}" if items else f"{number}:"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def build_messages(
    explanation: str, texts: Sequence[Sequence[str]], rejection: str | None = None
) -> list[dict]:
    example_answer = "\n".join(
        answer_line(n, e.tokens, e.activations) for n, e in enumerate(_EXAMPLE_TEXTS, start=1)
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _question(_EXAMPLE_EXPLANATION, [e.tokens for e in _EXAMPLE_TEXTS])},
        {"role": "assistant", "content": example_answer},
        {
            "role": "user",
            "content": _question(clean_explanation(explanation), texts) + rejection_note(rejection),
        },
    ]


# -- reading the answer -------------------------------------------------------------

_HEADER = re.compile(r"^[\s*`>#-]*(?:text\s*)?(\d+)\s*:(.*)$", re.IGNORECASE)
# One item: a quoted token ("..." with \" inside) or a bare one, an optional #k, = or :, a number.
_ITEM = re.compile(
    r'(?:"((?:[^"\\]|\\.)*)"|([^\s"=#,;:]+))'
    r"(?:\s*#\s*(\d+))?"
    r"\s*[=:]\s*"
    r"(-?\d+(?:\.\d+)?)(?![\w.])"
)
_SEPARATORS = re.compile(r"[\s,;]*")
_EMPTY = re.compile(r"^[\s,;.*`]*(?:none|-|\(none\)|nothing)?[\s,;.*`]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One `"token"#k=value` of an answer line."""

    quote: str
    occurrence: int | None
    value: str


def read_items(rest: str) -> list[Item] | None:
    """The items of an answer line's rest, or None when it is not a list of items."""
    items: list[Item] = []
    position = 0
    rest = rest.strip().strip("*`").strip().rstrip(".")
    while True:
        position = _SEPARATORS.match(rest, position).end()
        if position >= len(rest):
            return items
        match = _ITEM.match(rest, position)
        if match is None:
            return None
        quoted, bare, occurrence, value = match.groups()
        quote = quoted.replace('\\"', '"') if quoted is not None else bare
        items.append(Item(quote.strip(), int(occurrence) if occurrence else None, value))
        position = match.end()
        if position < len(rest) and not (rest[position].isspace() or rest[position] in ",;"):
            return None  # two items run together, or junk after a value


def resolve(item: Item, keys: Sequence[str]) -> int:
    """The one token `item` names; ParseError when it names none or several."""
    positions = [i for i, key in enumerate(keys) if key and key == item.quote]
    shown = _quote(item.quote) + (f"#{item.occurrence}" if item.occurrence is not None else "")
    if not positions:
        raise ParseError(f"{shown} is not a token of the text")
    if item.occurrence is None:
        if len(positions) > 1:
            raise ParseError(
                f"{shown} appears {len(positions)} times in the text; say which with #1 to #{len(positions)}"
            )
        return positions[0]
    if not 1 <= item.occurrence <= len(positions):
        times = "once" if len(positions) == 1 else f"{len(positions)} times"
        raise ParseError(f"{shown}: the token appears {times} in the text")
    return positions[item.occurrence - 1]


def parse_line(rest: str, tokens: Sequence[str]) -> list[float]:
    """One text's activations from the rest of its answer line; ParseError if unusable."""
    values = [0.0] * len(tokens)
    if _EMPTY.match(rest):
        return values
    items = read_items(rest)
    if items is None:
        raise ParseError(f"unreadable answer line {rest.strip()[:80]!r}")
    keys = [token_key(t) for t in tokens]
    assigned: dict[int, float] = {}
    for item in items:
        index = resolve(item, keys)
        value = parse_activation(item.value)
        if index in assigned and assigned[index] != value:
            raise ParseError(f"two values for {_quote(item.quote)}")
        assigned[index] = value
        values[index] = value
    return values


def parse_answer(
    text: str, texts: Sequence[Sequence[str]], *, truncated: bool = False
) -> list[list[float] | str]:
    """Per text of the batch, its activations or why its answer is unusable.

    `truncated`: the answer stopped at the output limit, so its last text line may be cut.
    """
    found: dict[int, list[float] | str] = {}
    last: int | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header is None:
            # Prose around the answer is ignored; items on a line of their own are not.
            stripped = line.strip().strip("`*")
            if last is not None and stripped and not _EMPTY.match(stripped) and read_items(stripped):
                found[last] = "the answer for this text ran over more than one line"
            continue
        number = int(header.group(1))
        if not 1 <= number <= len(texts):
            continue
        last = number
        if number in found:
            found[number] = "the answer had two lines for this text"
            continue
        try:
            found[number] = parse_line(header.group(2), texts[number - 1])
        except ParseError as exc:
            found[number] = str(exc)
    if truncated and last is not None:
        found[last] = "the answer was cut at the output limit"
    missing = "the answer had no line for this text"
    return [found.get(n, missing) for n in range(1, len(texts) + 1)]


# -- the simulator ------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """A span of one text, shown to the model as a text of its own."""

    text: int
    start: int
    end: int


def split_parts(lengths: Sequence[int], indices: Sequence[int], budget: int) -> list[_Part]:
    """Each text of `indices` whole, or in consecutive parts of at most `budget` tokens."""
    budget = max(1, int(budget))
    parts = []
    for i in indices:
        n = lengths[i]
        pieces = max(1, -(-n // budget))
        size = max(1, -(-n // pieces))  # parts of even length, none over the budget
        parts.extend(_Part(i, s, min(n, s + size)) for s in range(0, n, size))
        if n == 0:
            parts.append(_Part(i, 0, 0))
    return parts


def batch_parts(parts: Sequence[_Part], budget: int) -> list[list[_Part]]:
    """Parts in order, as many a batch as fit in `budget` tokens (a part alone always fits)."""
    batches: list[list[_Part]] = []
    current: list[_Part] = []
    size = 0
    for part in parts:
        n = part.end - part.start
        if current and size + n > budget:
            batches.append(current)
            current, size = [], 0
        current.append(part)
        size += n
    if current:
        batches.append(current)
    return batches


class CompactSimulator(LLMSimulator):
    name = "compact"
    version = "2"  # 2: the explanation quoted

    def __init__(
        self,
        backend: ChatBackend,
        model: str,
        cache: Any = None,
        concurrency: int = 8,
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        max_attempts: int = 2,
        max_output_tokens: int = MAX_OUTPUT_TOKENS,
    ) -> None:
        super().__init__(
            backend, model, cache, concurrency,
            max_attempts=max_attempts, max_output_tokens=max_output_tokens,
        )
        self.batch_tokens = max(1, int(batch_tokens))

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
        values: dict[int, list[float]] = {i: [0.0] * len(texts[i]) for i in todo}
        reasons: dict[int, str] = {}
        pending = split_parts([len(t) for t in texts], todo, self.batch_tokens)
        rejection: str | None = None
        for attempt in range(self.max_attempts):
            if not pending:
                break
            batches = batch_parts(pending, self.batch_tokens)
            outcomes = run_parallel(
                lambda batch: self._ask(
                    explanation, [texts[p.text][p.start : p.end] for p in batch], rejection, deadline
                ),
                batches,
                self.concurrency,
                deadline,
            )
            retry: list[_Part] = []
            problems: list[str] = []
            final = attempt + 1 == self.max_attempts
            for batch, (results, batch_usage) in zip(batches, outcomes):
                usage = usage + batch_usage
                for part, result in zip(batch, results):
                    if isinstance(result, BackendFailure):
                        reasons[part.text] = str(result)
                    elif isinstance(result, str):
                        problems.append(result)
                        if final:
                            tries = attempt + 1
                            reasons.setdefault(
                                part.text,
                                f"unusable answer after {tries} attempt{'s' if tries > 1 else ''}: {result}",
                            )
                        else:
                            retry.append(part)
                    else:
                        values[part.text][part.start : part.end] = result
            # Only the parts that failed are asked again; a text already lost is not.
            pending = [p for p in retry if p.text not in reasons]
            rejection = "; ".join(dict.fromkeys(problems))[:300] if problems else None

        for i in todo:
            if i in reasons:
                continue
            simulations[i] = SequenceSimulation(tokens=texts[i], expected_activations=values[i])
            self.cache.put(keys[i], simulation_to_cache(simulations[i]))
        failures = [TextFailure(index=i, reason=str(reasons[i])) for i in sorted(reasons)]
        return SimulationRun(simulations=simulations, failures=failures, usage=usage)

    def forecast(self, explanation: str, texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
        texts = [list(t) for t in texts]
        parts = split_parts([len(t) for t in texts], list(range(len(texts))), self.batch_tokens)
        batches = [[texts[p.text][p.start : p.end] for p in batch] for batch in batch_parts(parts, self.batch_tokens)]
        prompts = sum(count_message_tokens(build_messages(explanation, batch)) for batch in batches)
        return len(batches), prompts, sum(self._answer_cap(batch) for batch in batches)

    def _answer_cap(self, texts: Sequence[Sequence[str]]) -> int:
        """Room for every token active (about 6 tokens an item); a normal answer is far shorter."""
        return min(self.max_output_tokens, 6 * sum(len(t) for t in texts) + 6 * len(texts) + 32)

    def _ask(
        self,
        explanation: str,
        texts: list[list[str]],
        rejection: str | None,
        deadline: float | None,
    ) -> tuple[list[list[float] | str], Usage]:
        check_deadline(deadline)
        messages = build_messages(explanation, texts, rejection)
        try:
            completion = self.backend.chat(
                messages,
                model=self.model,
                temperature=0.0,
                max_tokens=self._answer_cap(texts),
                deadline=deadline,
            )
        except UpstreamError as exc:
            # Already retried by the backend: these texts fail, the others go on.
            return [BackendFailure(f"backend error: {exc}")] * len(texts), Usage()
        # Through the one reader of backend answers: an unfinished, oversized or echoed answer
        # is every text's failure; a cut one is read up to its last complete line.
        read = read_answer(
            completion,
            lambda answer: parse_answer(answer.text, texts, truncated=answer.truncated),
            echo=PromptEcho.of_messages(
                messages, exact=(f"Explanation (quoted): {quote_explanation(explanation)}",)
            ),
            truncated=Truncated.COMPLETE_LINES,
        )
        return (read.value if read.ok else [read.reason] * len(texts)), completion.usage
