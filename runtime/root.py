"""The composition root: every backend, cache, model, simulator, judge and scorer the
service uses is built here, from Settings and the registries, and handed to the domain.

The edge objects (backend, cache, local model) are built once per process, on first use,
and shared by every request and thread; tests pass their own in place of any of them.
Simulators, judges and scorers are cheap and built per request from those.
Nothing below this module reads Settings or calls back into it.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

from core.names import OFFLINE, OPENAI
from llm.backends import build_backend
from llm.backends.capabilities import CHAT, EMBEDDINGS
from llm.cache_open import CacheEvents, cache_status, open_configured_cache
from llm.errors import BackendUnavailable, CapabilityMissing
from runtime.settings import Settings
from scorer.judge import LLMJudge, OfflineJudge
from scorer.scorers import EMBEDDER, JUDGE, JUDGE_NAMES, SIMULATOR, scorer_spec
from scorer.scorers.base import Scorer
from scorer.simulators import simulator_spec
from scorer.simulators.base import Simulator, SimulatorParts

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
        # Failed cache operations, for whoever counts them (the HTTP layer's /metrics).
        self.cache_events = CacheEvents()

    def _once(self, name: str, build) -> Any:
        if name not in self._built:
            with self._lock:
                if name not in self._built:
                    self._built[name] = build()
        return self._built[name]

    # -- the edge: built once ------------------------------------------------------

    @property
    def embedder(self):
        """The packaged MiniLM model, or None when disabled or not installed."""

        def build():
            if not self.settings.offline_embeddings:
                return None
            return _local_model()

        return self._once("embedder", build)

    @property
    def backend(self):
        """The configured LLM backend (LLM_BACKEND), or None when no LLM is configured."""

        def build():
            if not self.settings.llm_configured:
                return None
            return build_backend(self.settings.llm_backend, self.settings)

        return self._once("backend", build)

    @property
    def cache(self):
        def build():
            s = self.settings
            return open_configured_cache(
                url=s.cache_url, path=s.cache_path, max_entries=s.cache_max_entries,
                ttl_seconds=s.cache_ttl_seconds, on_error=self.cache_events.report,
            )

        return self._once("cache", build)

    def cache_status(self) -> dict:
        """The cache's state for /health: a broken cache is a miss, shown as "degraded"."""
        return cache_status(self.cache)

    def require_backend(self, needs: frozenset[str] = frozenset({CHAT}), *, for_what: str = "this request"):
        """The backend, when it is configured and can do all of `needs`.

        BackendUnavailable (503) when none is configured; CapabilityMissing (400) naming
        both when it lacks a capability.
        """
        backend = self.backend
        if backend is None:
            raise BackendUnavailable(
                "no LLM backend is configured: set OPENAI_API_KEY or OPENAI_BASE_URL, "
                f"or ask for the '{OFFLINE}' simulator, judge or explainer"
            )
        missing = sorted(set(needs) - set(getattr(backend, "capabilities", needs)))
        if missing:
            raise CapabilityMissing(
                f"{for_what} needs {', '.join(missing)}, which the '{backend.name}' backend does not "
                f"offer (it offers {', '.join(sorted(backend.capabilities)) or 'nothing'})"
            )
        return backend

    def warm_up(self) -> None:
        """Load now what the first request would otherwise wait for (gunicorn's post_worker_init)."""
        if self.settings.default_simulator == OFFLINE:
            warm = getattr(self.simulator(OFFLINE), "warm_up", None)
            if warm is not None:
                warm()

    # -- the domain's parts: built per request ---------------------------------------

    def simulator(self, name: str | None = None, model: str | None = None) -> Simulator:
        name = name or self.settings.default_simulator
        spec = simulator_spec(name)
        if not spec.needs:
            return spec.build(SimulatorParts(embedder=self.embedder))
        backend = self.require_backend(spec.needs, for_what=f"the '{name}' simulator")
        return spec.build(
            SimulatorParts(
                model=model or self.settings.simulator_model,
                backend=backend,
                cache=self.cache,
                concurrency=self.settings.llm_concurrency,
                batch_tokens=self.settings.simulator_batch_tokens or None,
            )
        )

    @property
    def default_judge(self) -> str:
        """Offline when scoring is offline by default (no LLM configured, or SIMULATOR=offline)."""
        return OFFLINE if self.settings.default_simulator == OFFLINE else OPENAI

    def judge(self, name: str | None = None, model: str | None = None, *, batch_size: int | None = None):
        """The yes/no judge shared by detection, fuzzing and the hypothesis search: as many texts
        a prompt as SIMULATOR_BATCH_TOKENS allows, and at most `batch_size` when given."""
        name = name or self.default_judge
        if name == OFFLINE:
            return OfflineJudge(self.simulator(OFFLINE))
        if name != OPENAI:
            raise ValueError(f"unknown judge {name!r}; one of {', '.join(JUDGE_NAMES)}")
        return LLMJudge(
            self.require_backend(frozenset({CHAT}), for_what="the LLM judge"),
            model or self.settings.simulator_model,
            batch_size=batch_size,
            concurrency=self.settings.llm_concurrency,
            cache=self.cache,
            batch_tokens=self.settings.simulator_batch_tokens or None,
        )

    def scorer(self, name: str, options: Mapping[str, Any] | None = None) -> Scorer:
        """The scorer `name` around its simulator, judge or embedder.

        Options (each optional): simulator, model, judge, activation_threshold,
        batch_size, random_fraction, seed, top_k, rounds, activating_per_round; a
        scorer takes those its spec names and ignores the rest.
        """
        options = options or {}
        spec = scorer_spec(name)
        if spec.uses == SIMULATOR:
            part = self.simulator(options.get("simulator"), options.get("model"))
        elif spec.uses == JUDGE:
            part = self.judge(options.get("judge"), options.get("model"), batch_size=options.get("batch_size"))
        elif spec.uses == EMBEDDER:
            part = self.text_embedder(options.get("model"))
        else:  # pragma: no cover - a spec with an unknown part is a programming error
            raise ValueError(f"scorer {name!r} uses {spec.uses!r}")
        return spec.build(part, options)

    def explainer_backend(self, name: str | None = None, *, required: bool = True):
        """The backend for the explainer, or None for the offline explainer."""
        name = name or self.settings.default_explainer_backend
        if name == OFFLINE:
            return None
        if not required:
            return self.backend
        return self.require_backend(frozenset({CHAT}), for_what="the LLM explainer")

    def text_embedder(self, model: str | None = None):
        """Sentence embeddings for the embedding scorer and /similarity (EMBEDDING_BACKEND).

        `model` names the endpoint's embedding model; the local model is always the packaged one.
        """
        from llm.text_embedder import ApiTextEmbedder, LocalTextEmbedder

        s = self.settings
        if s.embedding_backend == OPENAI:
            backend = self.require_backend(frozenset({EMBEDDINGS}), for_what="EMBEDDING_BACKEND=openai")
            return ApiTextEmbedder(backend, model or s.embedding_model, cache=self.cache)
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
        return self._once("text_model", _local_model)


def _local_model():
    from llm.embeddings import LocalEmbedder, embeddings_available

    return LocalEmbedder() if embeddings_available() else None
