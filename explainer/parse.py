"""Cleaning an explainer's answer into one plain line, or None when there is nothing usable."""
from __future__ import annotations

import re
import unicodedata

from explainer.styles.base import PREFIX

# Models often echo the end of the prompt before answering; these are removed from the start.
_LEADING = [
    re.compile(r"^explanation(\s+of\s+neuron\s*\d*)?(\s+behaviou?r)?\s*[:\-]\s*", re.I),
    re.compile(r"^neuron\s*\d+\s*[:\-]\s*", re.I),
    re.compile(
        r"^(the\s+)?main\s+thing\s+(this|the)\s+(neuron|unit|latent)\s+does\s+is\s+"
        r"(to\s+)?find(s|ing)?\b\s*[:,]?\s*",
        re.I,
    ),
    re.compile(
        r"^(this|the)\s+(neuron|unit|latent)\s+(mainly\s+|mostly\s+)?"
        r"(finds|detects|responds\s+to|fires\s+on|activates\s+on)\b\s*[:,]?\s*",
        re.I,
    ),
]

_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
_EMPHASIS = re.compile(r"^(\*{1,2}|_{1,2})([^*_]+)\1$")

# Answers that are not an explanation at all.
_REFUSALS = re.compile(
    r"^(i\s*(am|'m)\s+(sorry|unable|not\s+able)|i\s+can(no|')t\b|sorry\b|as\s+an\s+ai\b)",
    re.I,
)
_NON_ANSWERS = {"unknown", "unclear", "n/a", "na", "none", "nothing", "no pattern", "not sure"}

# An explanation is a short phrase (the paper's limit is 60 tokens). A longer first paragraph
# is a runaway answer, not an explanation: it is refused, well below what /score accepts.
MAX_EXPLANATION_CHARS = 300
# Only the start of an answer is read: the first paragraph of anything usable is in it.
MAX_READ_CHARS = 20_000
# Control and format characters (zero-width, bidi overrides), lone surrogates and U+FFFD
# (what a lone surrogate became on the way in): never part of an explanation.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def visible_text(text: str) -> str:
    """`text` without invisible characters; line and paragraph separators become line breaks."""
    text = text.replace("\t", " ").replace("\x85", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    return "".join(
        ch for ch in text
        if ch == "\n" or (ch != "\ufffd" and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    )


def clean_explanation(text: str | None, prefix: str = PREFIX) -> str | None:
    """The explanation in `text`, cleaned: the first paragraph on one line, without an
    echoed prompt prefix, surrounding quotes or a trailing period. None if nothing usable."""
    if not text or not isinstance(text, str):
        return None
    text = visible_text(text[:MAX_READ_CHARS])
    paragraph = next((p for p in re.split(r"\n[^\S\n]*\n", text.strip()) if p.strip()), "")
    line = " ".join(paragraph.split())
    if len(line) > 4 * MAX_EXPLANATION_CHARS:
        return None  # runaway: not worth cleaning
    prefix_re = re.compile(r"^" + r"\s+".join(map(re.escape, prefix.split())) + r"\b\s*[:,]?\s*", re.I)
    previous = None
    while line != previous:
        previous = line
        if prefix.strip():
            line = prefix_re.sub("", line, count=1)
        for pattern in _LEADING:
            line = pattern.sub("", line, count=1)
        line = _EMPHASIS.sub(r"\2", _strip_quotes(line.strip())).strip()
        if line.endswith(".") and not line.endswith(".."):
            line = line[:-1].rstrip()
    if not re.search(r"\w", line) or _REFUSALS.match(line) or line.lower() in _NON_ANSWERS:
        return None
    if len(line) > MAX_EXPLANATION_CHARS:
        return None
    return line


def _strip_quotes(line: str) -> str:
    """Remove one pair of quotes around the whole line, but not two quoted items
    (`"fox" and "leopard"` stays as it is)."""
    if len(line) >= 2 and line[0] in _QUOTES and line[-1] == _QUOTES[line[0]]:
        inner = line[1:-1]
        if line[0] not in inner and _QUOTES[line[0]] not in inner:
            return inner.strip()
    # A closing period outside the quotes: "words about colors".
    if len(line) >= 3 and line[-1] == "." and line[0] in _QUOTES and line[-2] == _QUOTES[line[0]]:
        return _strip_quotes(line[:-1])
    return line
