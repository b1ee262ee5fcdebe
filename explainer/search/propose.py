"""Proposing hypotheses: the proposer's prompt, its answer parsed, near-duplicates dropped.

The proposer sees what AutoInterpret's authors wished for: the top texts (active tokens in
[brackets]), contrast texts (texts where the neuron is off that share the most words with the
top texts, so that the difference is visible), and every hypothesis tried so far with its
score. It is asked for several diverse binary conditions, as a numbered list.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from explainer.parse import visible_text
from explainer.records import (
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WINDOW,
    ActivationRecord,
    dedupe,
    normalize,
    select_top,
    trim_to_window,
)
from explainer.styles.base import highlighted_text
from llm.answers import PromptEcho, Truncated, cut_at_last_line, read_answer
from llm.backend import ChatBackend, Completion
from llm.errors import DeadlineExceeded
from llm.tokens import count_message_tokens
from llm.usage import Usage

log = logging.getLogger(__name__)

DEFAULT_CONTRAST_K = 5
# A text is a contrast candidate when its strongest activation is at most this share of the
# neuron's maximum ("off or weak"); when no text is that low, the weaker half is used.
CONTRAST_MAX_SHARE = 0.3
MAX_TRIED_SHOWN = 20  # the best tried hypotheses shown to the proposer; the rest are counted
MAX_HYPOTHESIS_CHARS = 300
PROPOSER_TEMPERATURE = 1.0  # diversity is the point of asking for several
COMPLETION_TOKENS_PER_HYPOTHESIS = 60

# Two hypotheses whose content words overlap this much (Jaccard) are the same hypothesis;
# with an embedder, so are two whose embeddings' cosine reaches DUPLICATE_COSINE.
DUPLICATE_JACCARD = 0.8
DUPLICATE_COSINE = 0.92

SYSTEM_PROMPT = (
    "We study the units of a language model (neurons, or latents of a sparse autoencoder). "
    "Each unit responds to something particular in text. You are finding out what one unit "
    "responds to by proposing hypotheses that will be tested. A hypothesis is a condition on "
    "a text that a reader can check with a yes or a no, such as \"the text mentions a military "
    "unit\" or \"a number follows a currency sign\". A good hypothesis holds on the texts where "
    "the unit is active and fails on the texts where it is not; it names the shared pattern "
    "(a kind of word, a topic, a construction, the context before the active token) rather "
    "than listing the examples. Line breaks inside a text are written as \\n."
)


# -- the texts the proposer sees ------------------------------------------------------------

_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on "
    "or our she so that the their them they this to was we were what when which who will with "
    "you your".split()
)


def _content_key(token: str) -> str | None:
    key = token.strip().casefold()
    if not key or not any(ch.isalnum() for ch in key) or key in _STOPWORDS:
        return None
    return key


def _content_keys(record: ActivationRecord) -> set[str]:
    return {k for k in map(_content_key, record.tokens) if k is not None}


def select_contrast(
    records: Sequence[ActivationRecord],
    top: Sequence[ActivationRecord],
    scale: float,
    k: int = DEFAULT_CONTRAST_K,
) -> list[ActivationRecord]:
    """Up to `k` texts where the neuron is off (or, failing that, weakest), sharing the most
    distinct content tokens with the top texts; ties go to the weaker text, then input order."""
    if k < 1:
        return []
    shown = {tuple(r.tokens) for r in top}
    others = [r for r in dedupe(records) if tuple(r.tokens) not in shown]
    low = [r for r in others if r.max_value <= CONTRAST_MAX_SHARE * scale]
    if not low:
        weakest_first = sorted(others, key=lambda r: r.max_value)
        low = weakest_first[: (len(weakest_first) + 1) // 2]
    top_keys: set[str] = set().union(*(_content_keys(r) for r in top)) if top else set()
    order = {id(r): n for n, r in enumerate(low)}
    ranked = sorted(
        low, key=lambda r: (-len(_content_keys(r) & top_keys), r.max_value, order[id(r)])
    )
    return ranked[:k]


class Scored(Protocol):
    """What the proposer is told about a hypothesis already tried."""

    hypothesis: str
    correlation: float | None
    balanced_accuracy: float | None


def _text_lines(records: Sequence[ActivationRecord], scale: float, threshold: int) -> list[str]:
    lines = []
    for n, record in enumerate(records, 1):
        window = trim_to_window(record, DEFAULT_WINDOW)
        shown = normalize([window], scale)[0]
        strongest = max(normalize([record], scale)[0].values)
        lines.append(f"{n}. ({strongest}) {highlighted_text(shown, threshold).strip()}")
    return lines


def _score_text(item: Scored) -> str:
    r = "n/a" if item.correlation is None else f"{item.correlation:+.2f}"
    acc = "n/a" if item.balanced_accuracy is None else f"{item.balanced_accuracy:.2f}"
    return f"r={r}, accuracy={acc}"


def _rank_key(item: Scored) -> tuple:
    return (item.correlation is None, -(item.correlation or 0.0))


def build_messages(
    top_texts: Sequence[str],
    contrast_texts: Sequence[str],
    tried: Sequence[Scored],
    n: int,
) -> list[dict]:
    """The proposer's messages, from texts already rendered as numbered lines."""
    parts = [
        "Texts where the unit is most active. Its active tokens are in [brackets]; the "
        "number in parentheses is the text's strongest activation, from 0 to 10:",
        "\n".join(top_texts),
    ]
    if contrast_texts:
        parts += [
            "Contrast texts: texts like those above where the unit is off or weak (strongest "
            "activation in parentheses). What is in the texts above and not in these?",
            "\n".join(contrast_texts),
        ]
    if tried:
        ranked = sorted(tried, key=_rank_key)
        shown = ranked[:MAX_TRIED_SHOWN]
        lines = [f"- {_score_text(item)}: {item.hypothesis}" for item in shown]
        if len(ranked) > len(shown):
            lines.append(f"- ... and {len(ranked) - len(shown)} lower-scoring hypotheses")
        parts += [
            "Hypotheses already tested, best first. r is the correlation (-1 to 1) of the "
            "yes/no answers with the unit's activation over all the texts; accuracy is the "
            "balanced accuracy at the best cutoff for \"active\" (0.5 is chance):",
            "\n".join(lines),
        ]
        ask = (
            f"Propose {n} new hypotheses. Make them differ from each other and from those "
            "tested: refine the best ones (narrower, broader, or with the context that tells "
            "the top texts from the contrast texts) and try some different ideas too."
        )
    else:
        ask = f"Propose {n} hypotheses, as different from each other as you can make them."
    parts.append(
        ask + " Answer with a numbered list, one hypothesis per line, each a condition on a "
        "text that can be answered yes or no, and nothing else."
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


# -- the answer ----------------------------------------------------------------------------

_ITEM = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):]|[-*\u2022](?=\s))\s*(.+?)\s*$")
_LABEL = re.compile(r"^(?:\*\*)?(?:hypothesis|condition)\s*\d*\s*[:.\-]\s*(?:\*\*)?", re.I)
_SCORE_ECHO = re.compile(r"\s*[\(\[]\s*r\s*=.*[\)\]]\s*$", re.I)
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d"}
_REFUSAL = re.compile(r"^(i\s*(am|'m)\s+(sorry|unable)|i\s+can(no|')t\b|sorry\b|as\s+an\s+ai\b)", re.I)


def parse_hypotheses(text: str | None) -> tuple[list[str], int]:
    """The hypotheses of a numbered (or bulleted) list, cleaned, and how many list items were
    unusable. Lines that are not list items (a preamble, a closing remark) are ignored."""
    hypotheses: list[str] = []
    rejected = 0
    for line in (text or "").splitlines():
        item = _ITEM.match(line)
        if item is None:
            continue
        cleaned = clean_hypothesis(item.group(1))
        if cleaned is None:
            rejected += 1
        else:
            hypotheses.append(cleaned)
    return hypotheses, rejected


def read_proposal(completion: Completion, messages: list[dict]) -> tuple[list[str], int]:
    """`parse_hypotheses` through llm.answers.read_answer: an answer cut at the output limit
    loses its cut item; one that repeats the instructions gives nothing (one rejected)."""
    system = [m.get("content") or "" for m in messages[:1]]
    read = read_answer(
        completion,
        lambda answer: parse_hypotheses(cut_at_last_line(answer.text) if answer.truncated else answer.text),
        # The question lists the hypotheses tried so far, which a proposer may well repeat:
        # only the instructions count as an echo.
        echo=PromptEcho.of_parts(system, ""),
        truncated=Truncated.COMPLETE_LINES,
        what="proposal",
    )
    return read.value if read.ok else ([], 1)


def clean_hypothesis(raw: str) -> str | None:
    if len(raw) > 4 * MAX_HYPOTHESIS_CHARS:
        return None  # a runaway item: refused before any pattern reads it
    line = " ".join(visible_text(raw).split())
    line = _LABEL.sub("", line).strip()
    if line.startswith("**") and line.endswith("**") and len(line) > 4:
        line = line[2:-2].strip()
    line = _SCORE_ECHO.sub("", line)
    if len(line) >= 2 and line[0] in _QUOTE_PAIRS and line[-1] == _QUOTE_PAIRS[line[0]]:
        if line[0] not in line[1:-1]:
            line = line[1:-1].strip()
    line = line.rstrip(".").rstrip()
    if len(line) < 3 or len(line) > MAX_HYPOTHESIS_CHARS or not re.search(r"[^\W\d_]", line):
        return None
    if _REFUSAL.match(line):
        return None
    return line


# -- near-duplicates -----------------------------------------------------------------------

# Words every hypothesis shares ("the text mentions ..."): they say nothing about which one it is.
_TEMPLATE_WORDS = _STOPWORDS | frozenset(
    "text texts contains contain containing mention mentions mentioning includes include "
    "including refers refer referring word words token tokens phrase phrases about any some "
    "there one or more".split()
)
_QUOTED = re.compile(r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def quoted_literals(hypothesis: str) -> frozenset[str]:
    """The tokens a hypothesis quotes, case-folded: naming an exact token is a claim of its own."""
    return frozenset((a or b).strip().casefold() for a, b in _QUOTED.findall(hypothesis))


def hypothesis_words(hypothesis: str) -> frozenset[str]:
    """The normalised content words of a hypothesis; a quoted literal counts whole, even a
    stopword ('"of"')."""
    quoted = {f'"{q}"' for q in quoted_literals(hypothesis)}
    rest = _QUOTED.sub(" ", hypothesis).casefold()
    words = {_stem(w) for w in re.findall(r"[^\W_]+", rest) if w not in _TEMPLATE_WORDS}
    return frozenset(words | quoted)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class Duplicate:
    hypothesis: str
    of: str  # the hypothesis (tried or kept earlier) it repeats
    by: str  # "exact", "jaccard" or "cosine"


class Deduplicator:
    """Drops hypotheses that say the same as one tried (or kept) before."""

    def __init__(
        self,
        embedder: Any = None,
        *,
        jaccard_threshold: float = DUPLICATE_JACCARD,
        cosine_threshold: float = DUPLICATE_COSINE,
    ) -> None:
        self.embedder = embedder
        self.jaccard_threshold = jaccard_threshold
        self.cosine_threshold = cosine_threshold

    def filter(
        self, candidates: Sequence[str], seen: Sequence[str]
    ) -> tuple[list[str], list[Duplicate]]:
        kept: list[str] = []
        duplicates: list[Duplicate] = []
        known = list(seen)
        words = {h: hypothesis_words(h) for h in [*known, *candidates]}
        vectors = self._embed([*known, *candidates])
        for candidate in candidates:
            match = self._match(candidate, known, words, vectors)
            if match is None:
                kept.append(candidate)
                known.append(candidate)
            else:
                duplicates.append(Duplicate(candidate, *match))
        return kept, duplicates

    def _match(self, candidate, known, words, vectors) -> tuple[str, str] | None:
        folded = " ".join(candidate.casefold().split())
        literals = quoted_literals(candidate)
        # Hypotheses quoting different tokens are different claims, however alike the rest.
        comparable = [o for o in known if quoted_literals(o) == literals]
        for other in comparable:
            if folded == " ".join(other.casefold().split()):
                return other, "exact"
            if jaccard(words[candidate], words[other]) >= self.jaccard_threshold:
                return other, "jaccard"
        if vectors:
            mine = vectors[candidate]
            for other in comparable:
                if float(np.dot(mine, vectors[other])) >= self.cosine_threshold:
                    return other, "cosine"
        return None

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self.embedder is None or not texts:
            return {}
        distinct = list(dict.fromkeys(texts))
        try:
            rows = np.asarray(self.embedder.embed(distinct), dtype=np.float64)
        except Exception as exc:  # the embedder is an optional refinement, never a failure
            log.warning("hypothesis embeddings unavailable (%s); Jaccard only", exc)
            return {}
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        return dict(zip(distinct, rows))


# -- the proposer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What a step is forecast to cost, checked against the budget before it starts."""

    calls: int = 0
    tokens: int = 0


@dataclass
class Proposal:
    hypotheses: list[str]  # as proposed, cleaned, in order (not yet de-duplicated)
    rejected: int = 0  # list items that were not usable hypotheses
    usage: Usage = field(default_factory=Usage)
    prompt_tokens: int | None = None  # tiktoken count of the prompt, when one was sent
    exhausted: bool = False  # a deterministic proposer with nothing left to propose


class LLMProposer:
    """Asks a chat model for hypotheses about the neuron behind `records`."""

    def __init__(
        self,
        backend: ChatBackend,
        model: str,
        records: Sequence[ActivationRecord],
        *,
        scale: float,
        threshold: int = DEFAULT_THRESHOLD,
        top_k: int = DEFAULT_TOP_K,
        contrast_k: int = DEFAULT_CONTRAST_K,
        temperature: float = PROPOSER_TEMPERATURE,
    ) -> None:
        self.backend = backend
        self.model = model
        self.temperature = temperature
        top = select_top(records, top_k)
        contrast = select_contrast(records, top, scale, contrast_k)
        self.top_texts = _text_lines(top, scale, threshold)
        self.contrast_texts = _text_lines(contrast, scale, threshold)

    def messages(self, tried: Sequence[Scored], n: int) -> list[dict]:
        return build_messages(self.top_texts, self.contrast_texts, tried, n)

    def forecast(self, tried: Sequence[Scored], n: int) -> Cost:
        """The next call's cost at most: one call, its prompt's tokens exactly, the completion cap."""
        return Cost(1, count_message_tokens(self.messages(tried, n)) + self.max_completion_tokens(n))

    @staticmethod
    def max_completion_tokens(n: int) -> int:
        return COMPLETION_TOKENS_PER_HYPOTHESIS * n + 20

    def __call__(self, tried: Sequence[Scored], n: int, deadline: float | None = None) -> Proposal:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed before proposing hypotheses")
        messages = self.messages(tried, n)
        completion = self.backend.chat(
            messages,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_completion_tokens(n),
            deadline=deadline,
        )
        usage = completion.usage or Usage()
        if usage.llm_calls == 0 and usage.cache_hits == 0:
            usage = usage + Usage(llm_calls=1)
        hypotheses, rejected = read_proposal(completion, messages)
        return Proposal(hypotheses, rejected, usage, count_message_tokens(messages))
