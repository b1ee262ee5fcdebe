"""The offline simulator: predicts activations from the explanation alone, with no LLM.

Every token gets a match strength in [0, 1], the largest of four kinds of
evidence, and its prediction is 10 x that strength:

1. literal: the explanation quotes or lists the token ("the word 'time'",
   `the numbers 2, 4, and 5`); same word form counts a little less
   ("running" ~ " Run"). "after / following / preceded by" before a quoted
   word moves the match to the next token, "before / followed by" to the
   previous one.
2. keyword: the token is a form of one of the explanation's own content words.
3. category: the explanation names a kind of token (numbers, years,
   punctuation or a particular mark, capitalised words, names, whitespace,
   end of text) and the token is one.
4. semantic (when the MiniLM embedder is there): the cosine of the token's
   word with the explanation, as a robust z-score against a fixed set of
   everyday words, so that "fast animals" lights " fox" and not " table".
   Function words and tokens without letters are never embedded, and at most
   `MAX_SEMANTIC_WORDS` distinct words per request are (the first ones to
   appear), so the cold cost is bounded. Words (the request's and the
   reference words alike) go through the embedder's `embed_words` when it has
   one: common words come from its precomputed table, the rest from the model
   (at most `MAX_MODEL_WORDS` of those per request); the explanation itself
   always goes through the model.

Parsing and matching are pure functions below; the embedder is injected.
Everything is deterministic: the same request gives the same numbers, with a
warm or a cold embedding cache.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from llm.errors import DeadlineExceeded
from llm.usage import Usage
from scorer.simulation import SequenceSimulation
from scorer.simulators.base import SimulationRun

log = logging.getLogger(__name__)

MAX_ACTIVATION = 10.0
LITERAL = 1.0  # the token is quoted or listed in the explanation
LITERAL_FORM = 0.8  # another form of a quoted word ("runs" for "running")
KEYWORD = 0.8  # a form of one of the explanation's content words
KEYWORD_WITH_LITERALS = 0.4  # ... when it also quotes tokens, which are then the claim
CATEGORY = 1.0  # a token of a kind the explanation names
WEAK_CATEGORY = 0.5  # a guess at the kind (a capitalised word as a name)
SEMANTIC = 0.8  # the most a merely similar word gets
SEMANTIC_WITH_LITERALS = 0.4  # ... when the explanation quotes tokens: the quote is the claim
# Robust z-scores of a word's similarity to the explanation: below Z_FLOOR a
# word is as close as any everyday word is; at Z_FULL and above it is as close
# as words of the named kind typically are (measured on hand-made probes such
# as "colors" vs red/blue/table, not on any scoring data set).
Z_FLOOR = 2.0
Z_FULL = 7.0
MAX_SEMANTIC_WORDS = 512  # about 0.5 s of one core when none is cached yet
# With the packaged word table, only words missing from it (names, rare forms) need
# the model, about 1.5 ms each: the first MAX_MODEL_WORDS of them per request are
# embedded, so a cold request stays near 40 ms of CPU. The choice depends only on the
# request, never on what is cached.
MAX_MODEL_WORDS = 16
_EMBED_CHUNK = 128  # words per model call between deadline checks

# Everyday content words: how similar an explanation is to words in general.
REFERENCE_WORDS = (
    "time people way day thing world life hand part place case week company system "
    "program question work government number night point home water room mother area "
    "money story fact month lot study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community "
    "name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason "
    "research girl guy moment air teacher force education"
).split()

_FUNCTION_WORDS = (
    "a an the this that these those there here it its it's they them their he him his she "
    "her hers we us our you your i me my mine one ones of in on at by for to from with "
    "without into onto over under about above below between through during before after "
    "against among around as than then so such and or nor but if else when where while "
    "which who whom whose what why how not no yes all any some each every both either "
    "neither other another more most less least much many few very too also just only "
    "even still again ever never is are was were be been being am do does did doing done "
    "have has had having will would shall should can could may might must s t d ll re ve "
    "m o don didn doesn isn wasn aren weren won wouldn couldn shouldn etc e g eg ie vs via "
    "upon within whether though although because since until unless once"
).split()
# The vocabulary of explanations themselves: it says where to look, not what to find.
_META_WORDS = (
    "word words token tokens phrase phrases text texts mention mentions mentioned "
    "reference references referring refers instance instances occurrence occurrences "
    "use uses usage related relating relate relates relation involving involve "
    "concerning regarding associated pertaining term terms thing things something "
    "anything stuff kind kinds type types sort sorts form forms variant variants "
    "language expression expressions context contexts passage passages sentence "
    "sentences document documents position positions part parts nothing particular "
    "especially specifically mainly mostly usually often typically generally general "
    "certain various specific common commonly likely found appear appears "
    "appearing occurs occur occurring indicating indicate indicates describing "
    "describe describes denoting denote denotes signaling signalling like including "
    "neuron neurons activates activate activation fires fire main find finds look "
    "looks looking detect detects detecting following follows followed preceding "
    "precedes preceded next previous"
).split()
STOPWORDS = frozenset(_FUNCTION_WORDS) | frozenset(_META_WORDS)

# Categories an explanation can name, each by the (stemmed) words that name it.
NUMBER, YEAR, PUNCTUATION, CAPITALISED, ALL_CAPS, NAME, WHITESPACE, NEWLINE, END_OF_TEXT = (
    "number", "year", "punctuation", "capitalised", "all_caps", "name", "whitespace",
    "newline", "end_of_text",
)
_CATEGORY_CUES: dict[str, tuple[str, ...]] = {
    NUMBER: ("number", "numeral", "digit", "numeric", "numerical", "integer", "quantity"),
    YEAR: ("year", "date"),
    PUNCTUATION: ("punctuation",),
    CAPITALISED: ("capitalized", "capitalised", "capitalization", "capitalisation"),
    ALL_CAPS: ("uppercase", "caps", "acronym", "abbreviation"),
    NAME: ("name",),
    WHITESPACE: ("whitespace", "indentation"),
    NEWLINE: ("newline", "linebreak"),
    END_OF_TEXT: ("endoftext", "eot"),
}
_PHRASE_CUES: tuple[tuple[str, str], ...] = (
    ("proper noun", NAME),
    ("capital letter", CAPITALISED),
    ("white space", WHITESPACE),
    ("named entit", NAME),
    ("line break", NEWLINE),
    ("new line", NEWLINE),
    ("end of text", END_OF_TEXT),
    ("end-of-text", END_OF_TEXT),
    ("end of document", END_OF_TEXT),
    ("upper case", ALL_CAPS),
    ("all caps", ALL_CAPS),
)
# Names of single marks (regular expressions); a named mark lights only that mark.
_MARK_NAMES: tuple[tuple[str, str], ...] = (
    (r"question marks?", "?"),
    (r"exclamation", "!"),
    (r"semi-?colons?", ";"),
    (r"\bcolons?\b", ":"),
    (r"commas?\b", ","),
    (r"(?<!time )\bperiods?\b(?! of)", "."),
    (r"full stops?", "."),
    (r"ellips[ie]s", "..."),
    (r"apostrophes?", "'’"),
    (r"quotation marks?|quote marks?", "\"'“”‘’"),
    (r"parenthes[ie]s", "()"),
    (r"brackets?", "()[]{}<>"),
    (r"\bbraces?\b", "{}"),
    (r"hyphens?", "-"),
    (r"\bdash(?:es)?\b", "-–—"),
    (r"\bslash(?:es)?\b", "/\\"),
    (r"less-than|less than (?:sign|symbol)", "<"),
    (r"greater-than|greater than (?:sign|symbol)", ">"),
    (r"ampersands?", "&"),
    (r"asterisks?", "*"),
    (r"hashtags?|hash (?:sign|symbol)s?", "#"),
    (r"dollar signs?|currency (?:sign|symbol)s?", "$€£¥"),
    (r"percent (?:sign|symbol)s?", "%"),
    (r"underscores?", "_"),
    (r"equals? signs?", "="),
    (r"plus signs?", "+"),
    (r"\bat signs?", "@"),
)
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty "
    "sixty seventy eighty ninety hundred thousand million billion trillion dozen".split()
)

_QUOTED = re.compile(
    r'"([^"\n]+)"|“([^”\n]+)”|‘([^’\n]+)’|`([^`\n]+)`|(?<![\w\'])\'([^\'\n]+?)\'(?![\w])'
)
# "the words of, in and to", "the numbers 2, 4, and 5", "the word time": a list
# right after "the <kind of token>", unquoted.
_LIST_HEAD = re.compile(
    r"\bthe\s+(?:words?|tokens?|strings?|letters?|characters?|numbers?|digits?|years?|"
    r"symbols?|terms?)\s+",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"([^\s,\"'“”‘’`]{1,16})")
_LIST_SEP = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)", re.IGNORECASE)
_ONLY = re.compile(r"\s*(?:[.;:!?)]|and nothing else|but not|only|$)", re.IGNORECASE)
# "after / following / preceded by" a few words before a quoted token: the
# activation is on the next token; "before / preceding / followed by": on the
# previous one.
_AFTER_CUE = re.compile(r"\b(?:after|following|preceded by|follows)\W*(?:\w+\W+){0,4}$")
_BEFORE_CUE = re.compile(r"\b(?:before|preceding|followed by|precedes)\W*(?:\w+\W+){0,4}$")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMERIC = re.compile(r"^[+-]?(?:\d[\d,._]*)(?:st|nd|rd|th|s|k|m|%)?$", re.IGNORECASE)
_YEAR = re.compile(r"^(?:1[0-9]|20)\d\d(?:s)?$")
END_OF_TEXT_TOKEN = "<|endoftext|>"
# GPT-2's byte-level alphabet shows a space as "Ġ", a newline as "Ċ", a tab as "ĉ".
_BYTE_LEVEL = str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t"})


@dataclass(frozen=True)
class Literal:
    """A token the explanation names; `offset` is where the activation is (0 on it, 1 after, -1 before)."""

    text: str  # case-folded
    offset: int = 0


@dataclass(frozen=True)
class Terms:
    """What an explanation says to look for."""

    literals: tuple[Literal, ...] = ()
    keywords: frozenset[str] = frozenset()  # stems of its content words
    categories: frozenset[str] = frozenset()
    marks: frozenset[str] = frozenset()  # single punctuation marks it names
    query: str = ""  # what to embed for semantic matching; "" for none


# -- text helpers ----------------------------------------------------------------


def normalize(token: str) -> str:
    """The token as matching sees it: GPT-2 byte-level marks decoded, stripped, case-folded."""
    return token.translate(_BYTE_LEVEL).strip().casefold()


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """A light suffix-stripper: enough for "running" ~ "run" ~ "runs", "cities" ~ "city"."""
    w = word.casefold()
    for suffix in ("'s", "’s"):
        if w.endswith(suffix):
            w = w[: -len(suffix)]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix, shortest in (("ing", 5), ("ed", 4), ("ly", 5)):
        if len(w) > shortest and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "aeioulsz":
        w = w[:-1]  # running -> runn -> run; add = added; "falling" keeps its "ll"
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]  # dance / danced / dancing all -> danc
    return w


def content_words(text: str) -> list[str]:
    """The words of `text` that say what to find: no function words, no explanation vocabulary."""
    words = (m.group(0).casefold() for m in _WORD.finditer(text))
    return [w for w in words if w not in STOPWORDS and not w.isdigit()]


def group_words(tokens: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Whole words from GPT-2 tokens, as (word, token indices).

    A token continues the word before it when it starts with a letter or digit
    (no leading space) and that word ends with one: " sad" + "der" is "sadder".
    Marks at a word's ends are dropped; words without a letter or digit, and
    bytes GPT-2 could not decode into text on their own ("âĢĻ"), are left out.
    """
    words: list[tuple[str, list[int]]] = []
    current, indices = "", []
    for i, raw in enumerate(tokens):
        tok = raw.translate(_BYTE_LEVEL)
        if _undecoded(tok) or tok.strip() == END_OF_TEXT_TOKEN:
            tok = ""  # ends the word before it and starts none
        if current and tok[:1].isalnum() and current[-1].isalnum():
            current += tok
            indices.append(i)
            continue
        if current:
            words.append((current, indices))
        current, indices = tok.strip(), [i]
    if current:
        words.append((current, indices))
    out = []
    for word, ix in words:
        core = _strip_marks(word)
        if core:
            out.append((core, ix))
    return out


def _strip_marks(text: str) -> str:
    start, end = 0, len(text)
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return text[start:end]


def _undecoded(token: str) -> bool:
    # GPT-2 shows bytes that are not text by themselves as characters U+0100-U+0143
    # (a few real Latin letters such as "ą" live there too; they only lose gluing).
    return any("\u0100" <= c <= "\u0143" for c in token)


# -- explanation -> terms ------------------------------------------------------------


def parse_explanation(explanation: str) -> Terms:
    """What to look for, read off an explanation written for people."""
    text = explanation.strip()
    literals: list[Literal] = []
    spans: list[tuple[int, int]] = []

    def add(item: str, start: int) -> None:
        before = text[max(0, start - 60) : start].casefold()
        offset = 0
        if _AFTER_CUE.search(before):
            offset = 1
        elif _BEFORE_CUE.search(before):
            offset = -1
        folded = item.casefold()
        if folded.strip():
            pieces = folded.split() if len(folded.split()) > 1 else [folded.strip()]
        else:
            pieces = [folded]  # a quoted space or newline is a literal too
        for piece in pieces:
            lit = Literal(piece, offset)
            if lit not in literals:
                literals.append(lit)

    for m in _QUOTED.finditer(text):
        item = next(g for g in m.groups() if g is not None)
        add(item, m.start())
        spans.append(m.span())

    for head in _LIST_HEAD.finditer(text):
        pos, items = head.end(), []
        if any(s <= pos < e for s, e in spans) or text[pos : pos + 1] in "\"'“‘`":
            continue  # quoted, handled above
        while True:
            m = _LIST_ITEM.match(text, pos)
            if not m:
                break
            items.append((m.group(1), m.start()))
            pos = m.end()
            sep = _LIST_SEP.match(text, pos)
            if not sep:
                break
            pos = sep.end()
        # One unquoted word is a list only when nothing follows it ("the word time");
        # "the words describing motion" is not a list of "describing".
        items = [(w.rstrip(".;:!?"), s) for w, s in items if w.rstrip(".;:!?")]
        if len(items) > 1 or (items and _ONLY.match(text, items[0][1] + len(items[0][0]))):
            for item, start in items:
                add(item, start)
                spans.append((start, start + len(item)))

    rest = _blank(text, spans)
    lowered = " " + re.sub(r"\s+", " ", rest.casefold()) + " "
    words = content_words(rest)
    stems = {stem(w) for w in words}

    categories = {cat for cat, cues in _CATEGORY_CUES.items() if stems & {stem(c) for c in cues}}
    categories |= {cat for phrase, cat in _PHRASE_CUES if phrase in lowered}
    marks: set[str] = set()
    for pattern, chars in _MARK_NAMES:
        if re.search(pattern, lowered):
            marks.update(chars)

    cue_stems = {stem(c) for cues in _CATEGORY_CUES.values() for c in cues}
    keywords = frozenset(s for s in stems if s not in cue_stems and len(s) > 1)
    query = " ".join(rest.split()) if words else ""
    return Terms(
        literals=tuple(literals),
        keywords=keywords,
        categories=frozenset(categories),
        marks=frozenset(marks),
        query=query,
    )


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


# -- token -> strength -----------------------------------------------------------


@dataclass(frozen=True)
class LiteralSet:
    """Quoted tokens with one offset, prepared for set look-ups."""

    exact: frozenset[str]
    stems: frozenset[str]  # of the quoted words that start with a letter
    spaces: frozenset[str]  # quoted whitespace (" ", a newline)

    @classmethod
    def of(cls, texts: Iterable[str]) -> "LiteralSet":
        texts = list(texts)
        return cls(
            exact=frozenset(t for t in texts if t.strip()),
            stems=frozenset(stem(t) for t in texts if t[:1].isalpha()),
            spaces=frozenset(t for t in texts if t and not t.strip()),
        )


def literal_match(token: str, literals: LiteralSet) -> float:
    """How well a token matches quoted tokens: exactly, as another word form, or not."""
    raw = token.translate(_BYTE_LEVEL)
    if not raw.strip():
        return LITERAL if raw and any(sp in raw for sp in literals.spaces) else 0.0
    norm = raw.strip().casefold()
    if norm in literals.exact:
        return LITERAL
    core = _strip_marks(norm)
    if core != norm and core in literals.exact:
        return LITERAL  # " fox." for "fox"
    if core[:1].isalpha() and literals.stems and stem(core) in literals.stems:
        return LITERAL_FORM
    return 0.0


def literal_strength(token: str, literal: str) -> float:
    """How well one token matches one quoted token (`literal` case-folded)."""
    return literal_match(token, LiteralSet.of([literal]))


def keyword_strength(token: str, keywords: frozenset[str], strength: float = KEYWORD) -> float:
    norm = _strip_marks(normalize(token))
    if not keywords or len(norm) < 2 or not norm[:1].isalpha():
        return 0.0
    return strength if stem(norm) in keywords else 0.0


def category_strength(
    token: str, categories: frozenset[str], marks: frozenset[str], sentence_start: bool
) -> float:
    """How well a token fits the kinds of token the explanation names."""
    if not categories and not marks:
        return 0.0
    raw = token.translate(_BYTE_LEVEL)
    core = raw.strip()
    best = 0.0
    if END_OF_TEXT in categories and core == END_OF_TEXT_TOKEN:
        return CATEGORY
    if not core:
        if NEWLINE in categories and "\n" in raw:
            return CATEGORY
        if WHITESPACE in categories and raw:
            return CATEGORY
        return 0.0
    if marks and (core in marks or (len(core) > 1 and all(c in marks for c in core))):
        return CATEGORY
    if PUNCTUATION in categories and all(not c.isalnum() and not c.isspace() for c in core):
        return CATEGORY
    if YEAR in categories and _YEAR.match(core):
        return CATEGORY
    if NUMBER in categories:
        if _NUMERIC.match(core) and any(c.isdigit() for c in core):
            return CATEGORY
        if core.casefold() in _NUMBER_WORDS:
            best = max(best, WEAK_CATEGORY)
    if YEAR in categories and _NUMERIC.match(core) and any(c.isdigit() for c in core):
        best = max(best, WEAK_CATEGORY)
    letters = [c for c in core if c.isalpha()]
    if letters and core[0].isalpha() and core[0].isupper():
        if CAPITALISED in categories:
            return CATEGORY
        if ALL_CAPS in categories and len(letters) > 1 and all(c.isupper() for c in letters):
            return CATEGORY
        if NAME in categories and not sentence_start:
            best = max(best, WEAK_CATEGORY)
    return best


def similarity_strength(similarity: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosines with the explanation -> strengths in [0, 1].

    `reference` holds the explanation's cosines with everyday words; a word
    counts as related as far as it stands out from them (robust z-score).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.size == 0 or np.asarray(reference).size == 0:
        return np.zeros_like(similarity)
    median = float(np.median(reference))
    spread = 1.4826 * float(np.median(np.abs(np.asarray(reference) - median)))
    spread = max(spread, 0.02)  # a degenerate reference must not blow tiny differences up
    z = (similarity - median) / spread
    return np.clip((z - Z_FLOOR) / (Z_FULL - Z_FLOOR), 0.0, 1.0)


def is_semantic_candidate(word: str) -> bool:
    """Words worth embedding: some letters, and not a function or explanation word."""
    w = word.casefold()
    return len(w) > 1 and any(c.isalpha() for c in w) and w not in STOPWORDS


def lexical_strengths(tokens: Sequence[str], terms: Terms) -> np.ndarray:
    """Literal, keyword and category evidence for each token of one text."""
    n = len(tokens)
    out = np.zeros(n, dtype=np.float64)
    words = group_words(tokens)
    sentence_start = _sentence_starts(tokens)
    # With a quoted token the rest of the explanation qualifies it; its words count less.
    keyword = KEYWORD_WITH_LITERALS if terms.literals else KEYWORD
    for i, token in enumerate(tokens):
        out[i] = max(
            keyword_strength(token, terms.keywords, keyword),
            category_strength(token, terms.categories, terms.marks, sentence_start[i]),
        )
    by_offset: dict[int, list[str]] = {}
    for lit in terms.literals:
        by_offset.setdefault(lit.offset, []).append(lit.text)
    for offset, texts in by_offset.items():
        literals = LiteralSet.of(texts)
        hits = np.array([literal_match(t, literals) for t in tokens], dtype=np.float64)
        for word, indices in words:
            if len(indices) > 1:
                # A piece of a longer word matches only exactly (" tim" of " timber" is
                # no form of "time"); the whole word is matched instead (" G" + "iles").
                pieces = hits[indices]
                pieces[pieces < LITERAL] = 0.0
                hits[indices] = np.maximum(pieces, literal_match(word, literals))
        out = np.maximum(out, _shift(hits, offset))
    for word, indices in words:  # keywords over whole words too ("sad"+"der")
        if len(indices) > 1 and keyword_strength(word, terms.keywords):
            out[indices] = np.maximum(out[indices], keyword)
    return out


def _shift(values: np.ndarray, offset: int) -> np.ndarray:
    """values moved `offset` places later (earlier when negative), zeros shifted in."""
    if offset == 0:
        return values
    out = np.zeros_like(values)
    n = len(values)
    if abs(offset) >= n:
        return out
    if offset > 0:
        out[offset:] = values[: n - offset]
    else:
        out[: n + offset] = values[-offset:]
    return out


def _sentence_starts(tokens: Sequence[str]) -> list[bool]:
    starts, previous = [], ""
    for token in tokens:
        starts.append(previous == "" or previous[-1:] in ".!?\n\"“:" or previous.strip() == END_OF_TEXT_TOKEN)
        if token.strip() or "\n" in token:
            previous = token if token.strip() else "\n"
    return starts


# -- the simulator -----------------------------------------------------------------


class OfflineSimulator:
    """Lexical matching, plus semantic matching with the packaged MiniLM model when given one."""

    name = "offline"

    def __init__(self, embedder=None) -> None:
        self._embedder = embedder
        # An embedder that already failed to load is not tried again.
        self._semantic = embedder is not None and not getattr(embedder, "load_error", None)
        self.model = _model_name(embedder if self._semantic else None)

    @property
    def semantic(self) -> bool:
        """Whether semantic matching is in use (false without a model, or after it failed to load)."""
        return self._semantic

    def forecast(self, explanation: str, texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
        return 0, 0, 0  # no LLM call

    def warm_up(self) -> None:
        """Load the model and word table, and embed the reference words, now: not in a request."""
        if self._semantic:
            try:
                warm_up = getattr(self._embedder, "warm_up", None)
                if warm_up is not None:
                    warm_up()
                self._embed_words(list(REFERENCE_WORDS))
            except Exception as exc:
                self._lexical_only(exc)

    def _embed_words(self, words: list[str]) -> np.ndarray:
        # Every word, the request's and the reference ones, the same way: a word's
        # vector (table or model) never depends on which list it came in.
        embed_words = getattr(self._embedder, "embed_words", None)
        return embed_words(words) if embed_words is not None else self._embedder.embed(words)

    def _lexical_only(self, exc: Exception) -> None:
        # The embedder logged the failure once; requests carry on lexically.
        log.debug("offline simulator: lexical matching only (%s)", exc)
        self._semantic = False
        self.model = _model_name(None)

    def simulate(
        self,
        explanation: str,
        texts: Sequence[Sequence[str]],
        *,
        deadline: float | None = None,
    ) -> SimulationRun:
        _check(deadline)
        terms = parse_explanation(explanation)
        strengths = []
        for tokens in texts:
            _check(deadline)
            strengths.append(lexical_strengths(list(tokens), terms))
        if self._semantic and terms.query:
            self._add_semantic(terms, texts, strengths, deadline)
        simulations = [
            SequenceSimulation(
                tokens=list(tokens),
                expected_activations=[round(float(v), 4) for v in MAX_ACTIVATION * s],
            )
            for tokens, s in zip(texts, strengths)
        ]
        return SimulationRun(simulations=simulations, usage=Usage())

    def _add_semantic(self, terms: Terms, texts, strengths: list[np.ndarray], deadline) -> None:
        grouped = [group_words(list(tokens)) for tokens in texts]
        table_has = getattr(self._embedder, "table_has", lambda word: None)
        vocabulary: dict[str, int] = {}
        model_words = 0  # words that need the model (not in the packaged word table)
        for words in grouped:
            for word, _ in words:
                key = word.casefold()
                if len(vocabulary) >= MAX_SEMANTIC_WORDS or key in vocabulary:
                    continue
                if not is_semantic_candidate(key):
                    continue
                in_table = table_has(key)
                if in_table is False:
                    if model_words >= MAX_MODEL_WORDS:
                        continue
                    model_words += 1
                vocabulary[key] = len(vocabulary)
        if not vocabulary:
            return
        try:
            query = self._embedder.embed([terms.query])[0]
            reference = self._embed_words(list(REFERENCE_WORDS)) @ query
            keys = list(vocabulary)
            sims = np.empty(len(keys), dtype=np.float64)
            for start in range(0, len(keys), _EMBED_CHUNK):
                _check(deadline)
                chunk = keys[start : start + _EMBED_CHUNK]
                sims[start : start + len(chunk)] = self._embed_words(chunk) @ query
        except DeadlineExceeded:
            raise
        except Exception as exc:  # the model is missing or broken
            self._lexical_only(exc)
            return
        weight = SEMANTIC_WITH_LITERALS if terms.literals else SEMANTIC
        word_strength = weight * similarity_strength(sims, reference)
        for words, out in zip(grouped, strengths):
            for word, indices in words:
                j = vocabulary.get(word.casefold())
                if j is not None and word_strength[j] > 0:
                    out[indices] = np.maximum(out[indices], word_strength[j])


def _model_name(embedder) -> str:
    if embedder is None:
        return "lexical"
    return f"lexical+{getattr(embedder, 'name', 'embeddings')}"


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the offline simulator ran past the request's deadline")
