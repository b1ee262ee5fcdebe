"""One Settings object, read from the environment (and `.env` through python-dotenv).

Nothing reads the environment at import time: `Settings.from_env()` is called by
`create_app()`, and tests build `Settings(...)` directly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

from core.names import OFFLINE, OPENAI  # noqa: F401  (re-exported)
from llm.backends import BACKEND_NAMES, capabilities
from llm.pricing import Prices, parse_prices

EMBEDDING_BACKENDS = ("local", OPENAI)


class ConfigError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    # Authentication: empty means the service is open (local use).
    server_key: str = ""

    # Which LLM backend (llm/backends/): "openai" is any OpenAI-compatible server.
    llm_backend: str = "openai"
    # What the server can do, when less than the backend declares ("chat,top_logprobs"):
    # a simulator that needs more is then a 400 naming both. Empty: the backend's own list.
    llm_capabilities: str = ""

    # The OpenAI-compatible backend. Setting either makes it the default backend.
    openai_api_key: str = ""
    openai_base_url: str = ""

    # Error bodies name the backend's host and port only when this is set (logs always do).
    show_backend_address: bool = False

    # Which simulator scores by default ("" = decided by whether an LLM is configured).
    simulator: str = ""
    simulator_model: str = "gpt-4o-mini"
    explainer_backend: str = ""
    explainer_model: str = "gpt-4o-mini"
    # Most input tokens of one explainer prompt; texts are trimmed, then dropped, to fit.
    explainer_max_prompt_tokens: int = 16000

    # Limits.
    max_content_length: int = 4 * 1024 * 1024
    max_texts: int = 200
    max_tokens_per_text: int = 2048
    max_explanation_chars: int = 2000

    # Time: the whole request, and the LLM client's own timeouts and retries.
    request_timeout: float = 120.0
    # Most seconds to receive a request's body (and to wait for any one read of it): 408.
    client_body_timeout: float = 30.0
    llm_connect_timeout: float = 5.0
    llm_read_timeout: float = 60.0
    llm_max_retries: int = 2
    llm_concurrency: int = 8
    # Most tokens of text (as sent) in one simulator or judge call: batches are cut by this
    # budget, not by a count, and a longer text is shown in parts (the compact simulator).
    simulator_batch_tokens: int = 2048

    # Cache of LLM answers (SQLite). Empty path: no cache.
    cache_path: str = "var/llm-cache.sqlite3"
    cache_max_entries: int = 100_000
    # redis://host:port/db: one cache for every replica instead of CACHE_PATH (llm/cache_redis.py);
    # its entries expire after CACHE_TTL_SECONDS (0: never), its memory is Redis's maxmemory.
    cache_url: str = ""
    cache_ttl_seconds: int = 7 * 24 * 3600

    # The offline simulator's semantic matching with the packaged MiniLM model.
    offline_embeddings: bool = True

    # Caps on a hypothesis search (POST /explain with strategy "search"): a request may ask
    # for less, never more. SEARCH_MAX_ROUNDS=0 turns the strategy off.
    search_max_rounds: int = 10
    search_max_llm_calls: int = 300
    search_max_tokens: int = 500_000

    # The embedding scorer and /similarity: "local" (the packaged MiniLM model, whatever
    # OFFLINE_EMBEDDINGS says) or "openai" (the backend's embeddings endpoint).
    embedding_backend: str = "local"
    embedding_model: str = "text-embedding-3-small"  # with "openai"

    # US dollars per million tokens, input/output, per model: "gpt-4o-mini=0.15/0.60,...".
    # Responses then carry usage.estimated_cost_usd; empty: no estimates.
    model_prices: str = ""

    # How an undefined score (a constant vector) is written: "null" (honest, the default) or
    # "zero" (0.0, listed in the answer's undefined_scores): Neuronpedia stores numbers only.
    undefined_score: str = "null"

    log_level: str = "INFO"

    # Production hardening (observability.py, ratelimit.py, proxy.py).
    # Per-client limit in Flask-Limiter's notation ("60/minute"); empty: no limit.
    rate_limit: str = ""
    # Where the limiter keeps its counters: empty = this process's memory; redis://...
    # so that every worker and replica shares them.
    ratelimit_storage_url: str = ""
    # Reverse proxies in front of the service whose X-Forwarded-* headers are believed.
    trusted_proxy_hops: int = 0
    # Root logger format: "json" (one object per line) or "text".
    log_format: str = "json"
    # GET /metrics asks for SERVER_KEY too (X-Secret-Key or Bearer) when true.
    metrics_require_key: bool = False

    def __post_init__(self) -> None:
        try:
            parse_prices(self.model_prices)
            capabilities.parse(self.llm_capabilities)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.undefined_score not in ("null", "zero"):
            raise ConfigError(f"UNDEFINED_SCORE={self.undefined_score!r}; one of null, zero")
        if self.llm_backend not in BACKEND_NAMES:
            raise ConfigError(f"LLM_BACKEND={self.llm_backend!r}; one of {', '.join(BACKEND_NAMES)}")
        if self.embedding_backend not in ("", *EMBEDDING_BACKENDS):  # "": local
            raise ConfigError(
                f"EMBEDDING_BACKEND={self.embedding_backend!r}; one of {', '.join(EMBEDDING_BACKENDS)}"
            )

    @property
    def llm_capabilities_set(self) -> frozenset[str] | None:
        """LLM_CAPABILITIES as a set, or None for the backend's own declaration."""
        return capabilities.parse(self.llm_capabilities) or None

    @property
    def prices(self) -> Prices:
        return parse_prices(self.model_prices)

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def default_simulator(self) -> str:
        if self.simulator:
            return self.simulator
        return "batched" if self.llm_configured else OFFLINE

    @property
    def default_explainer_backend(self) -> str:
        if self.explainer_backend:
            return self.explainer_backend
        return OPENAI if self.llm_configured else OFFLINE

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: str | None = ".env"
    ) -> "Settings":
        """Settings from `.env` overlaid by the real environment (the environment wins)."""
        merged: dict[str, Any] = {}
        if dotenv_path and os.path.exists(dotenv_path):
            merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        merged.update(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = merged.get(f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def public_summary(self) -> dict:
        """What /health may show: no secrets."""
        return {
            "auth_required": bool(self.server_key),
            "llm_configured": self.llm_configured,
            "openai_base_url": _strip_credentials(self.openai_base_url) or None,
            "limits": {
                "max_content_length": self.max_content_length,
                "max_texts": self.max_texts,
                "max_tokens_per_text": self.max_tokens_per_text,
            },
            # A search request may ask for less, never more (SEARCH_MAX_ROUNDS=0: no search).
            "search_caps": {
                "max_rounds": self.search_max_rounds,
                "max_llm_calls": self.search_max_llm_calls,
                "max_tokens": self.search_max_tokens,
            },
            "request_timeout": self.request_timeout,
        }


def _parse(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    raw = raw.strip()
    try:
        if type_name == "bool":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if type_name == "int":
            value = int(raw)
            if value < 0:
                raise ValueError(raw)
            return value
        if type_name == "float":
            value = float(raw)
            if not value > 0 or value == float("inf"):
                raise ValueError(raw)
            return value
    except ValueError:
        raise ConfigError(f"{name.upper()}={raw!r} is not a valid {type_name}") from None
    return raw


def _strip_credentials(url: str) -> str:
    """Scheme, host, port and path only: user info, query and fragment may carry a key
    (some gateways take `?api-key=`)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "" if any(c in url for c in "@?#") else url
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"
