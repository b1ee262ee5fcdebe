"""Errors of the LLM edge; the HTTP layer maps each to a status and a code."""
from __future__ import annotations


class LLMError(Exception):
    """Base of every backend failure."""


class BackendUnavailable(LLMError):
    """The backend is not configured or cannot be reached (HTTP 503)."""


class UpstreamError(LLMError):
    """The backend answered, but not usefully: bad key, refusal, unparseable output (HTTP 502)."""


class DeadlineExceeded(LLMError):
    """The request's deadline passed before the backend finished (HTTP 504)."""


class CapabilityMissing(ValueError):
    """The request asks for something the configured backend cannot do (HTTP 400):
    a simulator that needs prompt logprobs, say, on a server that gives none."""
