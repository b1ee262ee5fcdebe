"""Simulators by name: each is one file behind the interface in `base.py`.

Adding a simulator touches its own file and one line of `_FACTORIES`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from scorer.simulators.base import Simulator

if TYPE_CHECKING:
    from runtime import Runtime

OFFLINE = "offline"


def _offline(runtime: "Runtime", model: str | None) -> Simulator:
    from scorer.simulators.offline import OfflineSimulator

    return OfflineSimulator(embedder=runtime.embedder)


def _llm(module: str, cls: str) -> Callable[["Runtime", str | None], Simulator]:
    def factory(runtime: "Runtime", model: str | None) -> Simulator:
        from importlib import import_module

        simulator = getattr(import_module(f"scorer.simulators.{module}"), cls)
        return simulator(
            runtime.require_backend(),
            model or runtime.settings.simulator_model,
            cache=runtime.cache,
            concurrency=runtime.settings.llm_concurrency,
        )

    return factory


_FACTORIES: dict[str, Callable[["Runtime", str | None], Simulator]] = {
    OFFLINE: _offline,
    "batched": _llm("batched", "BatchedSimulator"),
    "json": _llm("json_per_text", "JsonPerTextSimulator"),
    "logprob": _llm("logprob_ev", "LogprobEVSimulator"),
    "all_at_once": _llm("all_at_once", "AllAtOnceSimulator"),
}

SIMULATOR_NAMES: tuple[str, ...] = tuple(_FACTORIES)
LLM_SIMULATORS = frozenset(SIMULATOR_NAMES) - {OFFLINE}


def build_simulator(name: str, runtime: "Runtime", model: str | None = None) -> Simulator:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown simulator {name!r}; one of {', '.join(SIMULATOR_NAMES)}") from None
    return factory(runtime, model)
