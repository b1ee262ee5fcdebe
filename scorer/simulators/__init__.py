"""Simulators by name: each is one file behind the interface in `base.py`.

A spec names the simulator's class, where it lives, and what it needs of an LLM backend
(the capability names of `llm.backends`); the composition root builds it from
`SimulatorParts`. Adding a simulator is its own file and one line of `SIMULATORS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from core.names import OFFLINE  # noqa: F401  (re-exported)
from llm.backends.capabilities import CHAT, COMPLETIONS_LOGPROBS, TOP_LOGPROBS
from scorer.simulators.base import Simulator, SimulatorParts


@dataclass(frozen=True)
class SimulatorSpec:
    module: str  # under scorer.simulators
    cls: str
    needs: frozenset[str]  # backend capabilities; empty: runs without an LLM
    # The constructor's keyword for SIMULATOR_BATCH_TOKENS (most text tokens a call), if it batches.
    batch_tokens: str | None = None

    def build(self, parts: SimulatorParts) -> Simulator:
        simulator = getattr(import_module(f"scorer.simulators.{self.module}"), self.cls)
        if not self.needs:
            return simulator(embedder=parts.embedder)
        options = {}
        if self.batch_tokens and parts.batch_tokens:
            options[self.batch_tokens] = parts.batch_tokens
        return simulator(parts.backend, parts.model, cache=parts.cache, concurrency=parts.concurrency, **options)


SIMULATORS: dict[str, SimulatorSpec] = {
    OFFLINE: SimulatorSpec("offline", "OfflineSimulator", frozenset()),
    "batched": SimulatorSpec("batched", "BatchedSimulator", frozenset({CHAT}), "max_batch_tokens"),
    "compact": SimulatorSpec("compact", "CompactSimulator", frozenset({CHAT}), "batch_tokens"),
    "json": SimulatorSpec("json_per_text", "JsonPerTextSimulator", frozenset({CHAT})),
    "logprob": SimulatorSpec("logprob_ev", "LogprobEVSimulator", frozenset({CHAT, TOP_LOGPROBS})),
    "all_at_once": SimulatorSpec("all_at_once", "AllAtOnceSimulator", frozenset({COMPLETIONS_LOGPROBS})),
}

SIMULATOR_NAMES: tuple[str, ...] = tuple(SIMULATORS)
LLM_SIMULATORS = frozenset(name for name, spec in SIMULATORS.items() if spec.needs)


def simulator_spec(name: str) -> SimulatorSpec:
    try:
        return SIMULATORS[name]
    except KeyError:
        raise ValueError(f"unknown simulator {name!r}; one of {', '.join(SIMULATOR_NAMES)}") from None
