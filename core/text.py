"""How a token is written into a prompt, the same for every prompt the service builds."""
from __future__ import annotations

import unicodedata

_END_OF_TEXT = "<|endoftext|>"
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Invisible characters that reorder or hide text (bidi embeddings, overrides and isolates,
# zero-width spaces, the byte-order mark): shown as escapes so a prompt reads as it is.
_INVISIBLE = frozenset("\u200b\u200c\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def render_token(token: str) -> str:
    """A token as a prompt shows it: one line, unambiguous, the caller's token otherwise untouched.

    Backslashes, line breaks and tabs are escaped, other control characters, the Unicode
    line and paragraph separators, lone surrogates and invisible bidi and zero-width
    characters written as `\\xNN` / `\\uNNNN`, so no token can break a line-based layout or
    a request's encoding, or hide or reorder text. `<|endoftext|>` is spelled out: some
    servers refuse special-token text in a prompt and models read it as the end of their
    input. Only prompts show this; every response keeps the tokens exactly as sent.
    """
    out = []
    for ch in token.replace(_END_OF_TEXT, "<end-of-text>"):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs"):  # Cs: a lone surrogate
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)
