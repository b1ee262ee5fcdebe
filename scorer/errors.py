"""Errors of the scoring domain; the HTTP layer maps each to a status and a code."""
from __future__ import annotations


class ScorerInputError(ValueError):
    """The records cannot be scored this way; the message says what to send instead (HTTP 400)."""
