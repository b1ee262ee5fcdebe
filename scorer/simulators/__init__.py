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


_FACTORIES: dict[str, Callable[["Runtime", str | None], Simulator]] = {
    OFFLINE: _offline,
}

SIMULATOR_NAMES: tuple[str, ...] = tuple(_FACTORIES)
LLM_SIMULATORS = frozenset(SIMULATOR_NAMES) - {OFFLINE}


def build_simulator(name: str, runtime: "Runtime", model: str | None = None) -> Simulator:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown simulator {name!r}; one of {', '.join(SIMULATOR_NAMES)}") from None
    return factory(runtime, model)
