"""A small OpenAI-compatible server on loopback, for tests and benchmarks.

It serves `POST /v1/chat/completions`, `POST /v1/completions` and `POST /v1/embeddings` from a
`ThreadingHTTPServer` on 127.0.0.1 (a free port) in a background thread. What it
answers is decided by a handler function given the parsed request; by default
`SimulationResponder`, which reads our simulation prompts and answers them in
their format with a keyword oracle (a token is active when the explanation names
it; embeddings are hashed bags of words), so the whole path from prompt to parser can
run without a model.

Faults are scripted: `stub.enqueue(StubReply(status=429, headers={"Retry-After": "1"}))`
makes the next request get that reply before the handler is consulted; replies
can also be delayed (`delay=`), dropped without an answer (`drop=True`), or
carry any body. Every request is recorded in `stub.requests`.

    with StubOpenAI() as stub:
        backend = OpenAIBackend(api_key="test", base_url=stub.base_url)
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from llm.tokens import count_message_tokens, count_tokens

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


@dataclass
class StubRequest:
    path: str
    body: dict
    headers: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def is_chat(self) -> bool:
        return self.path == CHAT_PATH

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages") or []

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content") or ""
        return ""

    @property
    def prompt(self) -> str:
        prompt = self.body.get("prompt", "")
        return prompt if isinstance(prompt, str) else "".join(prompt)


@dataclass
class StubReply:
    status: int = 200
    body: Any = None  # a dict is sent as JSON, a str as it is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer


Handler = Callable[[StubRequest], "StubReply | str | dict"]


# -- response bodies ---------------------------------------------------------------


def chat_body(
    request: StubRequest,
    content: str,
    *,
    logprobs: list[tuple[str, list[tuple[str, float]]]] | None = None,
    usage: bool = True,
    model: str = "stub-model",
    finish_reason: str | None = "stop",
) -> dict:
    """A chat completion; `logprobs` as (token, [(alternative, logprob), ...]) pairs;
    `finish_reason` "length" for an answer cut at max_tokens (see `truncate`)."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish_reason,
        "logprobs": None,
    }
    if logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": token,
                    "logprob": next((lp for t, lp in top if t == token), top[0][1] if top else 0.0),
                    "bytes": list(token.encode()),
                    "top_logprobs": [
                        {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top
                    ],
                }
                for token, top in logprobs
            ]
        }
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.body.get("model", model),
        "choices": [choice],
    }
    if usage:
        prompt_tokens = count_message_tokens(request.messages)
        completion_tokens = count_tokens(content)
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


def truncate(body: dict, keep: float = 0.5) -> dict:
    """A chat answer cut as a server cuts one at max_tokens: the first `keep` of its
    content (and of its logprobs), finish_reason "length"."""
    choice = body["choices"][0]
    content = choice["message"]["content"] or ""
    cut = int(len(content) * keep)
    choice["message"]["content"] = content[:cut]
    choice["finish_reason"] = "length"
    items = (choice.get("logprobs") or {}).get("content")
    if items:
        kept, length = [], 0
        for item in items:
            if length + len(item["token"]) > cut:
                break
            kept.append(item)
            length += len(item["token"])
        choice["logprobs"]["content"] = kept
        choice["message"]["content"] = "".join(i["token"] for i in kept)
    return body


def echo_prompt(request: "StubRequest") -> str:
    """What a server that echoes its input sends back: every message's content (or the prompt)."""
    if not request.is_chat:
        return request.prompt
    return "\n\n".join(str(m.get("content") or "") for m in request.messages)


def completion_body(
    request: StubRequest,
    tokens: Sequence[str],
    top_logprobs: Sequence[dict[str, float] | None] | None,
    *,
    generated: str = "",
    usage: bool = True,
) -> dict:
    """A completions answer whose logprobs cover `tokens` (the echoed prompt, then `generated`)."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    logprobs = None
    if top_logprobs is not None:
        logprobs = {
            "tokens": list(tokens),
            "token_logprobs": [
                None if top is None else top.get(tok, min(top.values(), default=0.0))
                for tok, top in zip(tokens, top_logprobs)
            ],
            "top_logprobs": list(top_logprobs),
            "text_offset": offsets,
        }
    body: dict[str, Any] = {
        "id": "cmpl-stub",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.body.get("model", "stub-model"),
        "choices": [
            {"index": 0, "text": "".join(tokens), "logprobs": logprobs, "finish_reason": "length"}
        ],
    }
    if usage:
        prompt_tokens = count_tokens(request.prompt)
        completion_tokens = count_tokens(generated)
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


def bag_of_words_vector(text: str, dimensions: int = 256) -> list[float]:
    """A deterministic stand-in embedding: word stems hashed into buckets, unit length."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOPWORDS:
            continue
        bucket = int(hashlib.sha256(_stem(word).encode()).hexdigest(), 16) % dimensions
        vector[bucket] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def embeddings_body(request: StubRequest, vectors: Sequence[Sequence[float]] | None = None) -> dict:
    """An embeddings answer: `vectors`, or bag-of-words vectors of the inputs."""
    inputs = request.body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    if vectors is None:
        vectors = [bag_of_words_vector(str(text)) for text in inputs]
    tokens = sum(count_tokens(str(text)) for text in inputs)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)
        ],
        "model": request.body.get("model", "stub-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def error_body(message: str, kind: str = "server_error") -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}


# -- a stand-in model that answers our simulation prompts --------------------------

_STOPWORDS = {
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "in", "into",
    "is", "it", "its", "of", "on", "or", "that", "the", "their", "this", "to", "with",
    "words", "word", "related", "references", "mentions", "instances", "phrases", "such",
    "other", "about", "any", "not", "only", "nothing", "else", "else.", "find", "main",
    "thing", "neuron", "does", "tokens", "token", "text",
}
_UNESCAPE = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def keyword_oracle(explanation: str, tokens: Sequence[str]) -> list[float]:
    """9 on a token the explanation names (plural-insensitive), 0 elsewhere."""
    words = {
        _stem(w) for w in re.findall(r"[a-z0-9]+", explanation.lower()) if w not in _STOPWORDS
    }
    values = []
    for token in tokens:
        norm = re.sub(r"[^a-z0-9]", "", token.lower())
        values.append(9.0 if norm and _stem(norm) in words else 0.0)
    return values


def unescape_token(rendered: str) -> str:
    return re.sub(r"\\[ntr\\]", lambda m: _UNESCAPE[m.group(0)], rendered)


def _numbered_tokens(block: str) -> list[str]:
    tokens = []
    for line in block.split("\n"):
        match = re.match(r"^(\d+)\t(.*)$", line)
        if match:
            tokens.append(unescape_token(match.group(2)))
    return tokens


def unquote(text: str) -> str:
    """The text of a quoted explanation or description (the prompts escape \\ and \")."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r'\\(["\\])', r"\1", text[1:-1])
    return text


def is_compact_prompt(question: str) -> bool:
    """The compact simulator's question: texts on lines `Text N: ...`, the explanation last."""
    return bool(re.match(r"Text 1: ", question)) and bool(re.search(r"^Explanation( \(quoted\))?: ", question, re.M))


def compact_tokens(shown: str) -> list[str]:
    """A compact text line read back into tokens as a model would see them: cut at spaces,
    at `|` and around written line breaks (the stand-in model does not know the real tokens)."""
    return [p for p in re.split(r" +|(?<!\\)\||(\\[ntr])", shown) if p]


def _explanation_in(text: str) -> str:
    matches = re.findall(r"^Explanation[^:\n]*:\s*(.*)$", text, re.MULTILINE)
    explanation = matches[-1] if matches else ""
    return unquote(re.sub(r"^the main thing this neuron does is find\s*", "", explanation))


class SimulationResponder:
    """Answers each simulation format's prompt with the activations `oracle` gives.

    The format is told by the request: the completions endpoint (all_at_once),
    chat in JSON mode (json), chat with logprobs (logprob), other chat (batched).
    The oracle may return the wrong number of values or values out of range:
    they are written as they are, to exercise the parsers.
    """

    def __init__(
        self,
        oracle: Callable[[str, Sequence[str]], Sequence[float]] = keyword_oracle,
        *,
        confidence: float = 0.9,
        usage: bool = True,
    ) -> None:
        self.oracle = oracle
        self.confidence = confidence
        self.usage = usage

    def __call__(self, request: StubRequest) -> dict:
        if request.path == EMBEDDINGS_PATH:
            return embeddings_body(request)
        if not request.is_chat:
            return self._all_at_once(request)
        if (request.body.get("response_format") or {}).get("type") == "json_object":
            return self._json(request)
        if request.body.get("logprobs"):
            return self._logprob(request)
        if is_compact_prompt(request.last_user_message):
            return self._compact(request)
        return self._batched(request)

    def _values(self, explanation: str, tokens: Sequence[str]) -> list[int | float]:
        return [_as_int(v) for v in self.oracle(explanation, tokens)]

    def _alternatives(self, value: int, prefix: str = "") -> list[tuple[str, float]]:
        """The chosen value with `confidence`, one neighbour with the rest."""
        other = value - 1 if value > 0 else 1
        top = [(f"{prefix}{value}", math.log(self.confidence))]
        if self.confidence < 1:
            top.append((f"{prefix}{other}", math.log(1 - self.confidence)))
        return top + [(f"{prefix}the", math.log(1e-6))]

    def _json(self, request: StubRequest) -> dict:
        question = request.last_user_message
        data, _ = json.JSONDecoder().raw_decode(question[question.index("{") :])
        tokens = [item["token"] for item in data["activations"]]
        values = self._values(data.get("explanation", ""), tokens)
        answer = {
            "activations": [
                {"token": tokens[i] if i < len(tokens) else "?", "activation": v}
                for i, v in enumerate(values)
            ]
        }
        return chat_body(request, json.dumps(answer), usage=self.usage)

    def _batched(self, request: StubRequest) -> dict:
        question = request.last_user_message
        explanation = _explanation_in(question)
        lines = []
        for number, block in re.findall(r"^Text (\d+):\n(.*?)(?=\n\nText \d+:|\Z|\n\n\()", question, re.S | re.M):
            values = self._values(explanation, _numbered_tokens(block))
            pairs = " ".join(f"{i}={v}" for i, v in enumerate(values) if v != 0)
            lines.append(f"{number}: {pairs}".rstrip())
        return chat_body(request, "\n".join(lines), usage=self.usage)

    def _compact(self, request: StubRequest) -> dict:
        question = request.last_user_message
        explanation = _explanation_in(question)
        lines = []
        for number, shown in re.findall(r"^Text (\d+): (.*)$", question, re.MULTILINE):
            tokens = compact_tokens(shown)
            values = self._values(explanation, tokens)
            counts: dict[str, int] = {}
            for token in tokens:
                counts[token] = counts.get(token, 0) + 1
            seen: dict[str, int] = {}
            items = []
            for token, value in zip(tokens, values):
                seen[token] = seen.get(token, 0) + 1
                if value != 0:
                    quoted = '"' + token.replace('"', '\\"') + '"'
                    items.append(quoted + (f"#{seen[token]}" if counts[token] > 1 else "") + f"={value}")
            lines.append(f"{number}: {', '.join(items)}".rstrip())
        return chat_body(request, "\n".join(lines), usage=self.usage)

    def _logprob(self, request: StubRequest) -> dict:
        question = request.last_user_message
        tokens = _numbered_tokens(question.split("Tokens:\n", 1)[-1])
        values = self._values(_explanation_in(question), tokens)
        pieces: list[tuple[str, list[tuple[str, float]]]] = []
        for i, value in enumerate(values):
            if i:
                pieces.append(("\n", [("\n", -0.01)]))
            pieces.append((str(i), [(str(i), -0.01)]))
            pieces.append((":", [(":", -0.01)]))
            pieces.append((str(value), self._alternatives(value)))
        content = "".join(token for token, _ in pieces)
        return chat_body(request, content, logprobs=pieces, usage=self.usage)

    def _all_at_once(self, request: StubRequest) -> dict:
        prompt = request.prompt
        explanation = _explanation_in(prompt)
        section = prompt[prompt.rfind("<start>\n") + len("<start>\n") :]
        tokens = [
            unescape_token(line[: -len("\tunknown")])
            for line in section.split("\n")
            if line.endswith("\tunknown")
        ]
        values = iter(self._values(explanation, tokens))
        pieces = re.findall(r"\t|\n|[^\t\n]+", prompt)
        tops: list[dict[str, float] | None] = []
        for k, piece in enumerate(pieces):
            if k == 0:
                tops.append(None)
            elif piece == "unknown" and pieces[k - 1] == "\t":
                tops.append(dict(self._alternatives(next(values, 0))))
            else:
                tops.append({piece: -0.01})
        generated = "\n" if request.body.get("max_tokens") else ""
        if generated:
            pieces.append(generated)
            tops.append({generated: -0.01})
        return completion_body(request, pieces, tops, generated=generated, usage=self.usage)


class JudgeResponder:
    """Answers the yes/no judge's prompts (scorer/judge.py) with the keyword oracle.

    Detection: yes when the oracle lights a word of the text. Fuzzing (texts with
    <<marks>>): yes when it lights at least half of the marked words. With
    `logprobs` requested, each yes/no token carries `confidence` and the other
    answer the rest. Any other request goes to `fallback` (simulation prompts,
    embeddings).
    """

    def __init__(
        self,
        oracle: Callable[[str, Sequence[str]], Sequence[float]] = keyword_oracle,
        *,
        confidence: float = 0.9,
        fallback: Handler | None = None,
    ) -> None:
        self.oracle = oracle
        self.confidence = confidence
        self.fallback = fallback or SimulationResponder(oracle)

    @staticmethod
    def is_judge_prompt(request: StubRequest) -> bool:
        return request.is_chat and re.search(r"^Description( \(quoted\))?: ", request.last_user_message, re.M) is not None

    def verdicts(self, request: StubRequest) -> list[tuple[int, bool]]:
        question = request.last_user_message
        condition = unquote(re.search(r"^Description(?: \(quoted\))?: (.*)$", question, re.M).group(1))
        out = []
        for number, text in re.findall(r"^Text (\d+): (.*)$", question, re.MULTILINE):
            if "<<" in text:
                words = [w for span in re.findall(r"<<(.*?)>>", text) for w in re.findall(r"[A-Za-z0-9]+", span)]
                lit = sum(1 for v in self.oracle(condition, words) if v > 0)
                out.append((int(number), bool(words) and lit * 2 >= len(words)))
            else:
                words = re.findall(r"[A-Za-z0-9]+", text)
                out.append((int(number), any(v > 0 for v in self.oracle(condition, words))))
        return out

    def __call__(self, request: StubRequest) -> Any:
        if not self.is_judge_prompt(request):
            return self.fallback(request)
        verdicts = self.verdicts(request)
        if not request.body.get("logprobs"):
            content = "\n".join(f"{n}: {'yes' if yes else 'no'}" for n, yes in verdicts)
            return chat_body(request, content)
        pieces: list[tuple[str, list[tuple[str, float]]]] = []
        sure, unsure = math.log(self.confidence), math.log(1 - self.confidence)
        for k, (n, yes) in enumerate(verdicts):
            if k:
                pieces.append(("\n", [("\n", -0.01)]))
            pieces += [(str(n), [(str(n), -0.01)]), (":", [(":", -0.01)])]
            chosen, other = (" yes", " no") if yes else (" no", " yes")
            pieces.append((chosen, [(chosen, sure), (other, unsure)]))
        return chat_body(request, "".join(t for t, _ in pieces), logprobs=pieces)


def _marked_words(text: str) -> list[str]:
    return [w for span in re.findall(r"<<(.*?)>>", text) for w in re.findall(r"[A-Za-z0-9]+", span)]


def _number_reply(
    request: StubRequest, label: str, value: int, other: int, confidence: float, logprobs: bool
) -> dict:
    """`label: value`, with top logprobs (value `confidence`, `other` the rest) when asked for and allowed."""
    if not (logprobs and request.body.get("logprobs")):
        return chat_body(request, f"{label}: {value}")
    top = [(f" {value}", math.log(confidence))]
    if confidence < 1:
        top.append((f" {other}", math.log(1 - confidence)))
    pieces = [(label, [(label, -0.01)]), (":", [(":", -0.01)]), (f" {value}", top + [(" the", math.log(1e-6))])]
    return chat_body(request, "".join(t for t, _ in pieces), logprobs=pieces)


class HolisticResponder:
    """Answers the holistic scorer's rubric prompt (scorer/scorers/holistic.py) with the keyword oracle.

    The level follows the rubric's counts: the share of texts with a marked word the
    oracle lights (0 none, 1 under half, 2 under four fifths, 3 not all, 4 all).
    With logprobs asked for (and `logprobs`), the level's digit carries `confidence`
    and the level below (or 1 for 0) the rest. Other requests go to `fallback`.
    """

    def __init__(self, oracle=keyword_oracle, *, confidence: float = 0.9, logprobs: bool = True, fallback=None):
        self.oracle = oracle
        self.confidence = confidence
        self.logprobs = logprobs
        self.fallback = fallback or JudgeResponder(oracle)

    @staticmethod
    def is_prompt(request: StubRequest) -> bool:
        return request.is_chat and bool(request.messages) and str(
            request.messages[0].get("content", "")
        ).startswith("You rate how well an explanation")

    def level(self, request: StubRequest) -> int:
        question = request.last_user_message
        explanation = question.split("\n", 1)[0][len("Explanation: "):]
        texts = re.findall(r"^Text \d+: (.*)$", question, re.MULTILINE)
        lit = sum(1 for t in texts if any(v > 0 for v in self.oracle(explanation, _marked_words(t))))
        share = lit / len(texts) if texts else 0.0
        return 0 if lit == 0 else 1 if share < 0.5 else 2 if share < 0.8 else 3 if share < 1 else 4

    def __call__(self, request: StubRequest) -> Any:
        if not self.is_prompt(request):
            return self.fallback(request)
        level = self.level(request)
        return _number_reply(request, "Level", level, level - 1 if level else 1, self.confidence, self.logprobs)


class IntruderResponder:
    """Answers the intruder scorer's prompt (scorer/scorers/intruder.py) with no explanation:
    the odd one is the text whose marked words (plural-insensitive) occur least among the
    other texts' marked words; ties go to the lowest number. Logprobs as HolisticResponder's,
    the rest on the next text. Other requests go to `fallback`.
    """

    def __init__(self, *, confidence: float = 0.9, logprobs: bool = True, fallback=None):
        self.confidence = confidence
        self.logprobs = logprobs
        self.fallback = fallback or JudgeResponder()

    @staticmethod
    def is_prompt(request: StubRequest) -> bool:
        return request.is_chat and bool(request.messages) and str(
            request.messages[0].get("content", "")
        ).startswith("You find the odd one out")

    @staticmethod
    def odd_one(request: StubRequest) -> tuple[int, int]:
        """The odd text's number, and the number of texts."""
        texts = re.findall(r"^Text \d+: (.*)$", request.last_user_message, re.MULTILINE)
        words = [{_stem(w.lower()) for w in _marked_words(t)} for t in texts]
        shared = [sum(1 for w in mine if any(w in other for j, other in enumerate(words) if j != k))
                  for k, mine in enumerate(words)]
        return 1 + min(range(len(texts)), key=lambda k: shared[k]), len(texts)

    def __call__(self, request: StubRequest) -> Any:
        if not self.is_prompt(request):
            return self.fallback(request)
        odd, n = self.odd_one(request)
        return _number_reply(request, "Odd one", odd, odd % n + 1, self.confidence, self.logprobs)


def scorer_judges(*, confidence: float = 0.9, logprobs: bool = True) -> Handler:
    """One handler for every judge prompt: intruder, holistic, yes/no; then simulation and embeddings."""
    return IntruderResponder(
        confidence=confidence,
        logprobs=logprobs,
        fallback=HolisticResponder(confidence=confidence, logprobs=logprobs, fallback=JudgeResponder(confidence=confidence)),
    )


def _as_int(value: float) -> int | float:
    """Whole values written as integers, as a model would."""
    return int(value) if float(value).is_integer() else float(value)


# -- a provider's prefix cache -----------------------------------------------------------


class PrefixCache:
    """Reports `usage.prompt_tokens_details.cached_tokens` the way OpenAI's automatic prompt
    caching does: the longest prefix of a chat prompt already seen, in whole blocks of
    `block` tokens, counted only from `minimum` tokens on (1024 and 128 at OpenAI).

    The prompt is the messages' roles and contents in order, in cl100k tokens.
    """

    def __init__(self, minimum: int = 1024, block: int = 128) -> None:
        self.minimum = minimum
        self.block = block
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def _prefix_digests(self, messages: list[dict]) -> list[tuple[int, bytes]]:
        from llm.tokens import get_encoding

        text = "".join(f"<{m.get('role')}>{m.get('content') or ''}" for m in messages)
        ids = get_encoding().encode(text, disallowed_special=())
        digest = hashlib.sha256()
        out = []
        for end in range(self.block, len(ids) + 1, self.block):
            digest.update(b"".join(i.to_bytes(4, "little") for i in ids[end - self.block : end]))
            if end >= self.minimum:
                out.append((end, digest.copy().digest()))
        return out

    def cached_tokens(self, messages: list[dict]) -> int:
        """The cached part of this prompt; the prompt is remembered for the next ones."""
        prefixes = self._prefix_digests(messages)
        with self._lock:
            cached = max((end for end, d in prefixes if d in self._seen), default=0)
            self._seen.update(d for _, d in prefixes)
        return cached


# -- the server ------------------------------------------------------------------------


class StubOpenAI:
    """The loopback server. Use as a context manager, or call start() and stop()."""

    def __init__(
        self, handler: Handler | None = None, *, delay: float = 0.0, prefix_cache: PrefixCache | None = None
    ) -> None:
        self.handler: Handler = handler or SimulationResponder()
        self.delay = delay  # seconds before every answer
        # When set, chat answers report the prompt tokens it has seen before as cached.
        self.prefix_cache = prefix_cache
        self.requests: list[StubRequest] = []
        self._queue: deque[StubReply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting --------------------------------------------------------------------

    def enqueue(self, *replies: StubReply) -> None:
        """Replies for the next requests, in order, before the handler is asked."""
        with self._lock:
            self._queue.extend(replies)

    def calls(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the stub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "StubOpenAI":
        stub = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                stub._serve(self)

            def do_GET(self) -> None:
                self._plain(404, error_body("not found", "invalid_request_error"))

            def _plain(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="stub-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StubOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(http, StubReply(400, error_body("invalid JSON body", "invalid_request_error")))
        path = http.path.split("?", 1)[0]
        request = StubRequest(path=path, body=body, headers={k.lower(): v for k, v in http.headers.items()})
        if path not in (CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH):
            return self._send(http, StubReply(404, error_body(f"no route {path}", "invalid_request_error")))
        with self._lock:
            self.requests.append(request)
            scripted = self._queue.popleft() if self._queue else None
        reply = scripted
        if reply is None:
            try:
                reply = _as_reply(request, self.handler(request))
            except Exception as exc:  # a broken handler shows up as a 500, not a hang
                reply = StubReply(500, error_body(f"stub handler failed: {type(exc).__name__}: {exc}"))
            self._report_cached(request, reply)
        delay = self.delay + reply.delay
        if delay > 0:
            time.sleep(delay)
        self._send(http, reply)

    def _report_cached(self, request: StubRequest, reply: StubReply) -> None:
        usage = reply.body.get("usage") if isinstance(reply.body, dict) else None
        if self.prefix_cache is None or not request.is_chat or not isinstance(usage, dict):
            return
        cached = min(self.prefix_cache.cached_tokens(request.messages), int(usage.get("prompt_tokens") or 0))
        usage["prompt_tokens_details"] = {"cached_tokens": cached}

    def _send(self, http: BaseHTTPRequestHandler, reply: StubReply) -> None:
        if reply.drop:
            http.close_connection = True
            try:
                http.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body = reply.body
        if body is None:
            body = {} if reply.status < 400 else error_body(f"stub error {reply.status}")
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            http.send_response(reply.status)
            http.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                http.send_header(name, value)
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to answer


def _as_reply(request: StubRequest, result: Any) -> StubReply:
    if isinstance(result, StubReply):
        return result
    if isinstance(result, str):
        if request.is_chat:
            return StubReply(body=chat_body(request, result))
        return StubReply(body=completion_body(request, [request.prompt, result], None, generated=result))
    return StubReply(body=result)


def refused_url() -> str:
    """A loopback base URL with nothing listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
