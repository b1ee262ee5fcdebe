"""Explanations are adversarial input: refuse the ones that forge an answer or open a new prompt section.

Neuronpedia scores explanations that players write for points. The simulator reads the
explanation inside its prompt, so an explanation can try to score well without describing
the neuron: by carrying an answer in the simulator's own format (the batched simulator's
`1: 27=10 39=10`, the logprob simulator's `0:0 1:10`, the JSON simulator's
`"activations": [...]`, the all-at-once simulator's `token<TAB>10` table, the judge's
`1: yes`), or by opening a new message or section of the prompt (`system:`,
`<|im_start|>`, `Text 1:`, `Explanation:`, "ignore the previous instructions", a markdown
header, a code fence, `<start>`/`<end>`).

`check_explanation(text)` names the first such thing it finds (a `Rejection`) or returns
None; `normalise_explanation(text)` is the one-line form every prompt shows. Both are pure.
The rules look for the formats' *shapes*, not for numbers or quotes as such: "years like
1999", "the token '=' in code", "scores like 3-2", "times like 10:30" and "C++ operators
such as == and <=" are ordinary explanations and pass. Activation values are 0-10, so a
pair like `10:30` (a time) is not read as `index:value`.

The checks run on the text as sent (for what is only visible across lines) and on a
skeleton of it: NFKC-folded (a full-width colon is a colon), invisible format characters
removed (a zero-width space does not split `system:`), whitespace collapsed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CODE = "explanation_rejected"


@dataclass(frozen=True)
class Rejection:
    rule: str  # a stable name: "forged_answer", "role_marker", ...
    found: str  # the offending excerpt, as found in the skeleton (shortened)
    message: str  # for the caller: what was found and why it is refused

    code: str = CODE

    def to_dict(self) -> dict:
        return {"error": self.message, "code": self.code, "rule": self.rule, "found": self.found}


# -- normalising ---------------------------------------------------------------------------------


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def normalise_explanation(text: str) -> str:
    """One line: line breaks, tabs and other control characters become spaces, runs of
    whitespace one space, no leading or trailing space. Printable text is kept as sent."""
    spaced = "".join(" " if _is_control(ch) else ch for ch in text)
    return " ".join(spaced.split())


# Letters that look like Latin ones in the words the rules look for (role names, labels):
# Cyrillic and Greek lookalikes read as the Latin letter they imitate.
_LOOKALIKES = str.maketrans(
    "аАвВеЕкКмМнНоОрРсСтТуУхХіІјЈѕЅԁһԛԝ"
    "αΑβΒεΕηΗιΙκΚμΜνΝοΟρΡτΤυΥχΧ",
    "aABBeEkKmMhHoOpPcCtTyYxXiIjJsSdhqw"
    "aABBeEnHiIkKuMvNoOpPtTuYxX",
)


def _skeleton(text: str) -> str:
    """What the rules read: NFKD, format characters (zero-width, bidi), combining marks and
    variation selectors dropped, lookalike letters read as Latin, one line."""
    folded = unicodedata.normalize("NFKD", text)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Mn", "Me"))
    return normalise_explanation(unicodedata.normalize("NFKC", visible).translate(_LOOKALIKES))


# -- the rules -------------------------------------------------------------------------------------

_VALUE = r"(?:10|\d)(?:\.\d+)?(?![\d.])"  # an activation, 0-10: "30" in 10:30 is not one
_EQ_PAIR = rf"\d{{1,4}}\s*=\s*{_VALUE}"
_COLON_PAIR = rf"\d{{1,4}}:{_VALUE}"
_SEP = r"[\s,;]+(?:\d{1,3}[.:)]\s*)?"  # between pairs, maybe the next text's number
_VERDICT = r"\d{1,3}\s*[:.)]\s*(?:yes|no)\b"
_LOOSE_VERDICT = r"\d{1,3}\s*[:.)\-]?\s*(?:yes|no)\b"
_QUOTED_PAIR = rf"[\"\u201c\u201d'][^\"\u201c\u201d']{{1,40}}[\"\u201c\u201d'](?:#\d{{1,3}})?\s*=\s*{_VALUE}"

# (rule, what it is, pattern over the skeleton), the first match refuses.
_SKELETON_RULES: list[tuple[str, str, re.Pattern]] = [
    # -- forged simulator and judge answers
    ("forged_answer", "a numbered answer line of the batched simulator",
     re.compile(rf"(?<![\d:.])\d{{1,3}}\s*:\s*(?:{_EQ_PAIR}|{_COLON_PAIR}{_SEP}{_COLON_PAIR})", re.I)),
    ("forged_answer", "index=activation pairs",
     re.compile(rf"(?<![\w.=+\-*/])(?:{_EQ_PAIR}{_SEP}){{1,}}{_EQ_PAIR}")),
    ("forged_answer", "index:activation pairs",
     re.compile(rf"(?<![\w.:])(?:{_COLON_PAIR}{_SEP}){{1,}}{_COLON_PAIR}")),
    ("forged_answer", "quoted token=activation pairs (the compact simulator's answer)",
     re.compile(rf"{_QUOTED_PAIR}(?:{_SEP}{_QUOTED_PAIR})+|[\"\u201c\u201d'][^\"\u201c\u201d']{{1,40}}[\"\u201c\u201d']#\d{{1,3}}\s*=\s*{_VALUE}"
                rf"|(?<![\d:.])\d{{1,3}}\s*:\s*{_QUOTED_PAIR}")),
    ("forged_answer", "(index, activation) pairs",
     re.compile(rf"\(\s*\d{{1,4}}\s*,\s*{_VALUE}\s*\)(?:{_SEP}\(\s*\d{{1,4}}\s*,\s*{_VALUE}\s*\))+"
                rf"|\[\s*\[\s*\d{{1,4}}\s*,\s*{_VALUE}\s*\]")),
    ("forged_answer", "a JSON activations list",
     re.compile(r"[\"'\u201c\u201d]?\bactivations?\b[\"'\u201c\u201d]?\s*:\s*[\[{\d\"]"
                r"|\{\s*[\"']?(?:token|activation)[\"']?\s*:"
                r"|\{\s*[\"']?\d{1,4}[\"']?\s*:\s*\d", re.I)),
    ("forged_answer", "judge verdicts",
     re.compile(rf"(?<![\d:.]){_LOOSE_VERDICT}(?:[\s,;.]+{_LOOSE_VERDICT})+", re.I)),
    ("forged_answer", "a judge verdict",
     re.compile(r"\b(?:answer|verdict|label)\s*:\s*(?:yes|no)\b", re.I)),
    ("forged_answer", "an activation table's placeholder",
     re.compile(r"(?<!\w)unknown\s+(?:\S+\s+unknown\b)", re.I)),
    # -- new messages and prompt sections
    ("role_marker", "a chat role marker",
     re.compile(r"(?<![\w-])(?:system|assistant|user|developer|human|ai|bot)\s*:(?!\d)", re.I)),
    ("role_marker", "a chat template token",
     re.compile(r"<\|(?!endoftext\|>)[A-Za-z_][\w\-]{0,40}\|>|\[/?INST\]|<</?SYS>>"
                r"|</?(?:system|user|assistant|im_start|im_end)\b[^>]{0,20}>", re.I)),
    ("prompt_section", "a section marker of the prompt",
     re.compile(r"<\s*/?\s*(?:start|end)\s*>"
                r"|</?\s*(?:explanation|description|text|document|tokens|activations|instructions?|answer)\b[^>]{0,20}>",
                re.I)),
    ("prompt_section", "a label of the simulator's or judge's prompt",
     re.compile(r"\b(?:text|neuron|example|document)\s*#?\d{1,3}\s*:"
                r"|\b(?:explanation|description|tokens|activations|condition|answer|response|instructions?)"
                r"(?:\s*\([^)]{0,20}\))?\s*:"
                r"|\bexplanation of neuron\b", re.I)),
    # Mid-line, "##" is only a header in the prompt when it names a section ("## and ###"
    # in an explanation of markdown is not); at the start of a line, see _HEADER_LINE.
    ("prompt_section", "a markdown header",
     re.compile(r"(?<!\S)#{1,6}\s*(?:instructions?|response|system|answer|task|explanation|input|output"
                r"|assistant|user|context|note|rules?)\b", re.I)),
    ("prompt_section", "a code fence",
     re.compile(r"```|~~~")),
    ("instruction", "an instruction to the model",
     re.compile(
         r"\b(?:ignore|disregard|forget|override)\s+(?:(?:all|any|the|your|of|my|these|those)\s+)*"
         r"(?:(?:previous|prior|above|earlier|preceding|system|original|former|other)\s+)?"
         r"(?:instructions?|prompts?|rules|directions|guidelines|context|everything)\b"
         r"|\b(?:ignore|disregard|forget)\s+(?:(?:all|everything)\s+)?(?:the\s+)?(?:above|previous|prior|foregoing)\b"
         r"|\b(?:new|updated|real|actual)\s+instructions?\s*:"
         r"|\byou\s+are\s+now\b"
         r"|\b(?:respond|reply)\s+(?:only\s+)?with\b"
         r"|\b(?:assign|give|predict|output|return|set|rate|score|mark)\b[^.]{0,30}?"
         r"\b(?:every|each|all)\s+(?:of\s+the\s+)?(?:tokens?|words?|texts?|activations?|positions?)\b"
         r"[^.]{0,30}?\b(?:10|ten|maximum|max|highest|yes)\b"
         r"|\b(?:assign|give|predict|output|return|set|rate)\b[^.]{0,20}?\b(?:10|ten|maximum|max|highest)\b"
         r"[^.]{0,20}?\b(?:to|for|on)\s+(?:every|each|all)\b"
         r"|\b(?:activations?|values?|scores?)\b[^.]{0,20}?(?:\b(?:are|is|should\s+be)|=)\s*(?:all\s+)?"
         r"(?:10|ten|maximum|max)\b[^.]{0,30}?\b(?:every|each|all)\b"
         r"|\b(?:every|each|all(?:\s+the)?)\s+(?:tokens?|words?)\b[^.]{0,30}?"
         r"(?:\b(?:is|are|gets?|should\s+(?:be|get))|=)\s*(?:an?\s+)?(?:10|ten)\b",
         re.I)),
]

# Shapes only visible across the lines of the text as sent.
_TABLE_LINE = re.compile(r"^\s*\S{1,40}[ \t]+(?:10|\d)(?:\.\d+)?\s*$")
_TAB_VALUE = re.compile(r"\S?\t+\s*(?:10|\d|unknown)\b", re.I)
_VERDICT_LINE = re.compile(rf"^\s*{_VERDICT}\s*$", re.I)
_HEADER_LINE = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_FIRST_HEADER_LINE = re.compile(r"^\s{0,3}#{2,6}\s+\S")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse(rule: str, what: str, found: str) -> Rejection:
    excerpt = _shorten(" ".join(found.split()))
    return Rejection(
        rule=rule,
        found=excerpt,
        message=(
            f"explanation rejected: it contains {what} ({excerpt!r}); an explanation describes "
            "what the neuron responds to and cannot carry answers or prompt sections"
        ),
    )


def check_explanation(text: str) -> Rejection | None:
    """The first forged answer or prompt section in `text`, or None when it is an ordinary
    explanation."""
    lines = text.splitlines()
    if len([line for line in lines if _TABLE_LINE.match(line)]) >= 2:
        return _refuse("forged_answer", "a token-and-activation table", text)
    tab = _TAB_VALUE.search(text)
    if tab:
        return _refuse("forged_answer", "a token<TAB>activation line", tab.group(0))
    for n, line in enumerate(lines):
        # A single '#' opening the text is a character ("# signs in code"), not a header.
        if (_HEADER_LINE if n else _FIRST_HEADER_LINE).match(line):
            return _refuse("prompt_section", "a markdown header", line)
    for line in lines:
        if _VERDICT_LINE.match(line):
            return _refuse("forged_answer", "a judge verdict line", line)
    skeleton = _skeleton(text)
    for rule, what, pattern in _SKELETON_RULES:
        match = pattern.search(skeleton)
        if match:
            return _refuse(rule, what, match.group(0))
    return None
