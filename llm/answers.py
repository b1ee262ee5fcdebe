"""Reading what a backend wrote: the one place an answer becomes values or a failure.

A backend is an outside party. It may answer with numbers of thousands of digits,
JSON nested a hundred thousand deep, logprobs of +800, lone surrogates, an answer
cut at the output limit, or the prompt itself sent back. None of that may become
an HTTP 500, and none of it may become a score.

Two halves:

- the shape (`as_text`, `as_logprob`, `as_count`, ...): what the HTTP client
  decoded, made into the types `llm.backend.Completion` promises, with bounds;
  `llm.backends.openai` builds every Completion with them.
- the reading (`read_answer`): every simulator format, the yes/no judge, the
  explainer and the hypothesis proposer hand their completion and their parser
  to it. It refuses an answer cut short (unless the format can use the complete
  part), one that is too long, and one that repeats the prompt's own instruction
  or example text; then it runs the parser, and whatever the parser raises on
  what the backend wrote is a failure with a reason, never an exception.

The parsers keep their own bounds too (digit counts in their regexes, length caps
before `json.loads`, clamped `exp`): this module is the net, they are the rope.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from llm.backend import Completion, TokenLogprob
from llm.errors import LLMError

log = logging.getLogger(__name__)

T = TypeVar("T")

# An answer longer than this is refused before any parser sees it. Far above what
# any format asks for (the output caps are a few thousand tokens).
MAX_ANSWER_CHARS = 200_000
MAX_LOGPROB_ITEMS = 50_000  # logprob entries kept from one answer (an echoed prompt included)
MAX_TOP_ALTERNATIVES = 64  # top alternatives kept per entry (OpenAI gives at most 20)
MAX_TOKEN_CHARS = 1_000  # one logprob entry's token text
MAX_COUNT = 10**9  # a usage count above this is not believed
MAX_MODEL_CHARS = 200  # the served model's name, as responses repeat it

# finish_reason values that mean the model ended its answer itself. None: the server
# does not say (older or minimal servers), which is taken as a finished answer.
FINISHED = frozenset({"stop", "eos", "eos_token", "end_turn", "stop_sequence", "end"})
# ... and those that mean it was cut at the output limit: the complete part may be usable.
CUT_SHORT = frozenset({"length", "max_tokens", "model_length", "max_output_tokens"})

_SURROGATE = re.compile("[\ud800-\udfff]")


# -- the shape ------------------------------------------------------------------------


def as_text(value: Any, limit: int | None = None) -> str:
    """A string from whatever a server put in a text field: lone surrogates replaced,
    anything not a string (a number, a list, null) as the empty string."""
    if not isinstance(value, str):
        return ""
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return _SURROGATE.sub("\ufffd", value)


def as_logprob(value: Any) -> float:
    """A logprob as a float <= 0 (a probability is at most 1), or NaN if it is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return math.nan
    if math.isnan(number):
        return math.nan
    return min(number, 0.0)


def probability(logprob: Any) -> float:
    """exp(logprob) for a logprob from a backend, in [0, 1]; 0 for anything unusable."""
    value = as_logprob(logprob)
    if math.isnan(value):
        return 0.0
    return math.exp(max(value, -745.0))


def as_alternatives(value: Any) -> tuple[tuple[str, float], ...]:
    """Top alternatives from a list of {token, logprob} objects or a {token: logprob} dict."""
    if isinstance(value, dict):
        pairs: Iterable = value.items()
    elif isinstance(value, (list, tuple)):
        pairs = (
            (getattr(alt, "token", None) if not isinstance(alt, dict) else alt.get("token"),
             getattr(alt, "logprob", None) if not isinstance(alt, dict) else alt.get("logprob"))
            for alt in value
        )
    else:
        return ()
    out = []
    for token, logprob in pairs:
        if len(out) >= MAX_TOP_ALTERNATIVES:
            break
        if isinstance(token, str):
            out.append((as_text(token, MAX_TOKEN_CHARS), as_logprob(logprob)))
    return tuple(out)


def as_token_logprob(token: Any, logprob: Any, top: Any) -> TokenLogprob:
    return TokenLogprob(
        token=as_text(token, MAX_TOKEN_CHARS), logprob=as_logprob(logprob), top=as_alternatives(top)
    )


def as_count(value: Any) -> int | None:
    """A token count a server reported, or None when it is no believable count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    if not 0 <= value <= MAX_COUNT:
        return None
    return int(value)


def as_finish_reason(value: Any) -> str | None:
    if value is None:
        return None
    return as_text(value, 40).strip().lower() or None


def as_model(value: Any) -> str | None:
    text = as_text(value, MAX_MODEL_CHARS).strip()
    return text if text and text.isprintable() else None


def bounded_int(digits: str, limit: int) -> int | None:
    """int(digits) when it has at most `limit` digits (leading zeros aside), else None.

    Python refuses to convert strings of more than 4300 digits (ValueError); a
    number that long is no index or count anyway.
    """
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > limit or not stripped.isdigit() or not stripped.isascii():
        return None
    return int(stripped)


# -- echoes of the prompt ---------------------------------------------------------------

MIN_ECHO_CHARS = 32  # shorter lines ("1: yes", "Text 2:") occur in honest answers
_ECHO_CHARS = 80  # the start of a line is enough to know it
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class PromptEcho:
    """What an answer must not repeat: the prompt's instruction and example text
    (sentences of the system and few-shot messages) and the lines of the question itself.

    `allowed` are parts an honest answer may repeat (the explanation prefix that an
    explainer completes). Example text that the question also contains (an
    explanation or a text that happens to equal an example) is not held against an answer.
    """

    fingerprints: tuple[str, ...] = ()
    markers: re.Pattern | None = None  # the question's layout, which no answer uses
    lines: frozenset[str] = frozenset()  # whole lines of the question, however short

    @classmethod
    def of_messages(
        cls,
        messages: Sequence[dict],
        *,
        allowed: Sequence[str] = (),
        markers: re.Pattern | None = None,
        exact: Sequence[str] = (),
        question_lines: bool = True,
    ) -> "PromptEcho":
        """From chat messages: the system and few-shot questions are the fixed parts (the
        few-shot answers are not: an honest answer may look like them), the last is the question.
        `question_lines=False` for a format whose honest answer may mirror the question's lines."""
        texts = [as_text(m.get("content")) for m in messages if isinstance(m, dict)]
        roles = [m.get("role") for m in messages if isinstance(m, dict)]
        if not texts:
            return cls(markers=markers)
        question = texts[-1]
        fixed = [t for t, r in zip(texts[:-1], roles[:-1]) if r != "assistant"]
        return cls.of_parts(
            fixed, question, allowed=allowed, markers=markers, exact=exact, question_lines=question_lines
        )

    @classmethod
    def of_parts(
        cls,
        fixed: Sequence[str],
        question: str,
        *,
        allowed: Sequence[str] = (),
        markers: re.Pattern | None = None,
        exact: Sequence[str] = (),
        question_lines: bool = True,
    ) -> "PromptEcho":
        """`exact`: lines of the question that mark an echo whatever their length
        (its label line, e.g. `Explanation: ...`)."""
        normal_question = _norm(question)
        normal_allowed = [_norm(a) for a in allowed if a.strip()]
        chunks: list[str] = []
        for text in fixed:
            for line in text.splitlines():
                for sentence in _SENTENCE_END.split(line):
                    chunk = _norm(sentence)[:_ECHO_CHARS]
                    if len(chunk) >= MIN_ECHO_CHARS and chunk not in normal_question:
                        chunks.append(chunk)
        for line in question.splitlines() if question_lines else ():
            chunk = _norm(line)
            if any(a in chunk for a in normal_allowed):
                continue
            chunk = chunk[:_ECHO_CHARS]
            if len(chunk) >= MIN_ECHO_CHARS:
                chunks.append(chunk)
        lines = frozenset(_norm(e) for e in exact if e.strip())
        return cls(tuple(dict.fromkeys(chunks)), markers, lines)

    def found_in(self, answer: str) -> str | None:
        """The repeated prompt text (its start), or None when the answer repeats none."""
        if self.markers is not None:
            hit = self.markers.search(answer)
            if hit:
                return hit.group(0).strip()[:40]
        if self.lines:
            for line in answer.splitlines():
                normal_line = _norm(line.strip("`*#> "))
                if normal_line in self.lines:
                    return normal_line[:40]
        normal = _norm(answer)
        for chunk in self.fingerprints:
            if chunk in normal:
                return chunk[:40]
        return None


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A completion as a parser sees it: text bounded and cleaned, and whether it was cut short."""

    text: str
    logprobs: list[TokenLogprob] | None
    truncated: bool
    finish_reason: str | None


@dataclass(frozen=True)
class Read(Generic[T]):
    """A parser's value, or the reason the answer is unusable (`value` is then None)."""

    value: T | None = None
    reason: str | None = None
    truncated: bool = False  # the answer was cut at the output limit: a larger budget may help

    @property
    def ok(self) -> bool:
        return self.reason is None


class Truncated:
    """How a format takes an answer cut at the output limit."""

    FAIL = "fail"  # nothing in it is trusted: the whole answer is a failure
    COMPLETE_LINES = "complete_lines"  # the parser gets `truncated` and drops the cut line
    IGNORE = "ignore"  # the values are not in the generated text (an echoed prompt's logprobs)


def cut_at_last_line(text: str) -> str:
    """The lines of `text` that a newline ended: what an answer cut short surely finished."""
    end = text.rfind("\n")
    return text[: end + 1] if end >= 0 else ""


def read_answer(
    completion: Completion,
    parse: Callable[[Answer], T],
    *,
    echo: PromptEcho | None = None,
    truncated: str = Truncated.FAIL,
    max_chars: int = MAX_ANSWER_CHARS,
    what: str = "answer",
) -> Read[T]:
    """`parse(answer)` for a backend's completion, or why the answer is unusable.

    Raises only the LLM errors a parser raises on purpose (a backend that cannot
    serve the format at all, e.g. no logprobs); any other exception a parser
    raises on what the backend wrote becomes the reason.
    """
    finish = as_finish_reason(getattr(completion, "finish_reason", None))
    cut = finish in CUT_SHORT
    if finish is not None and finish not in FINISHED and not cut and truncated != Truncated.IGNORE:
        return Read(reason=f"the {what} did not finish normally (finish_reason {finish!r})")
    if cut and truncated == Truncated.FAIL:
        return Read(
            reason=f"the {what} was cut at the output limit (finish_reason {finish!r})", truncated=True
        )
    raw = completion.text if isinstance(completion.text, str) else ""
    if len(raw) > max_chars:
        return Read(reason=f"the {what} is {len(raw)} characters long, over the limit of {max_chars}")
    text = as_text(raw)
    logprobs = completion.logprobs
    spelled = None  # the text the logprob tokens spell, when a parser may read that instead
    if logprobs is not None:
        if len(logprobs) > MAX_LOGPROB_ITEMS:
            return Read(reason=f"the {what} has {len(logprobs)} logprob entries, over the limit of {MAX_LOGPROB_ITEMS}")
        if sum(len(item.token) for item in logprobs) > max_chars:
            return Read(reason=f"the {what}'s logprob tokens are over the limit of {max_chars} characters")
        spelled = "".join(item.token for item in logprobs)
    if echo is not None:
        for seen in (text, spelled) if spelled not in (None, text) else (text,):
            repeated = echo.found_in(seen)
            if repeated is not None:
                return Read(reason=f"the {what} repeats the prompt ({repeated!r}...)")
    answer = Answer(
        text=text, logprobs=logprobs, truncated=cut and truncated != Truncated.IGNORE, finish_reason=finish
    )
    try:
        return Read(value=parse(answer), truncated=answer.truncated)
    except LLMError:
        raise
    except RecursionError:
        return Read(reason=f"the {what} is nested too deeply to read")
    except Exception as exc:  # noqa: BLE001 - a backend's text must not raise past this point
        if not isinstance(exc, ValueError):
            # ParseError (a ValueError) is the parsers' own word; anything else is a parser
            # meeting input it did not expect: worth a line in the log, never a 500.
            log.warning("a backend %s broke its parser: %s", what, type(exc).__name__)
        message = str(exc)[:200] or type(exc).__name__
        return Read(reason=message, truncated=answer.truncated)
