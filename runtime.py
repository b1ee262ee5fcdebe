"""The composition root: builds the edge objects (backend, cache, local model) from Settings.

Each is built once per process, on first use, and shared by every request and
thread; tests pass their own in place of any of them.
"""
from __future__ import annotations

import threading
from typing import Any

from config import OFFLINE, OPENAI, Settings
from llm.errors import BackendUnavailable
from scorer.simulators import LLM_SIMULATORS, build_simulator
from scorer.simulators.base import Simulator

_UNSET: Any = object()


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        backend: Any = _UNSET,
        embedder: Any = _UNSET,
        cache: Any = _UNSET,
    ) -> None:
        self.settings = settings
        self._built: dict[str, Any] = {}
        for name, value in (("backend", backend), ("embedder", embedder), ("cache", cache)):
            if value is not _UNSET:
                self._built[name] = value
        self._lock = threading.Lock()
        # Failed cache operations, for whoever counts them (server.py: /metrics).
        from llm.cache_open import CacheEvents

        self.cache_events = CacheEvents()

    def _once(self, name: str, build) -> Any:
        if name not in self._built:
            with self._lock:
                if name not in self._built:
                    self._built[name] = build()
        return self._built[name]

    @property
    def embedder(self):
        """The packaged MiniLM model, or None when disabled or not installed."""

        def build():
            if not self.settings.offline_embeddings:
                return None
            from llm.embeddings import LocalEmbedder, embeddings_available

            return LocalEmbedder() if embeddings_available() else None

        return self._once("embedder", build)

    @property
    def backend(self):
        """The OpenAI-compatible backend, or None when no LLM is configured."""

        def build():
            if not self.settings.llm_configured:
                return None
            from llm.openai_backend import OpenAIBackend

            return OpenAIBackend.from_settings(self.settings)

        return self._once("backend", build)

    @property
    def cache(self):
        def build():
            from llm.cache_open import open_configured_cache

            s = self.settings
            return open_configured_cache(
                url=s.cache_url, path=s.cache_path, max_entries=s.cache_max_entries,
                ttl_seconds=s.cache_ttl_seconds, on_error=self.cache_events.report,
            )

        return self._once("cache", build)

    def cache_status(self) -> dict:
        from llm.cache_open import cache_status

        return cache_status(self.cache)

    def require_backend(self):
        backend = self.backend
        if backend is None:
            raise BackendUnavailable(
                "no LLM backend is configured: set OPENAI_API_KEY or OPENAI_BASE_URL, "
                f"or ask for the '{OFFLINE}' simulator, judge or explainer"
            )
        return backend

    def warm_up(self) -> None:
        """Load now what the first request would otherwise wait for (gunicorn's post_worker_init)."""
        if self.settings.default_simulator == OFFLINE:
            simulator = self.simulator(OFFLINE)
            warm = getattr(simulator, "warm_up", None)
            if warm is not None:
                warm()

    def explainer_backend(self, name: str | None = None, *, required: bool = True):
        """The backend for the explainer, or None for the offline explainer."""
        name = name or self.settings.default_explainer_backend
        if name == OFFLINE:
            return None
        return self.require_backend() if required else self.backend

    def simulator(self, name: str | None = None, model: str | None = None) -> Simulator:
        name = name or self.settings.default_simulator
        if name in LLM_SIMULATORS:
            self.require_backend()
        return build_simulator(name, self, model or self.settings.simulator_model)

    def text_embedder(self, model: str | None = None):
        """Sentence embeddings for the embedding scorer and /similarity (EMBEDDING_BACKEND).

        `model` names the endpoint's embedding model; the local model is always the packaged one.
        """
        from llm.text_embedder import ApiTextEmbedder, LocalTextEmbedder

        s = self.settings
        if s.embedding_backend == OPENAI:
            return ApiTextEmbedder(self.require_backend(), model or s.embedding_model)
        local = self._local_text_model()
        if local is None:
            from llm.embeddings import unavailable_reason

            raise BackendUnavailable(
                f"the local embedding model is not available ({unavailable_reason()}); "
                "set EMBEDDING_BACKEND=openai to use an embeddings endpoint"
            )
        return LocalTextEmbedder(local)

    def _local_text_model(self):
        """The packaged model: the offline simulator's, or one of its own when
        OFFLINE_EMBEDDINGS=0 keeps the simulator lexical (that setting is the simulator's)."""
        if self.embedder is not None:
            return self.embedder

        def build():
            from llm.embeddings import LocalEmbedder, embeddings_available

            return LocalEmbedder() if embeddings_available() else None

        return self._once("text_model", build)
