"""Scorers by name: explanation + records -> score, metric, per-text breakdown.

One file per scorer behind `base.Scorer`. A spec names the scorer's class and the one
part it is built around (a simulator, a yes/no judge, or a text embedder); the
composition root builds that part and the scorer's keyword options. Adding a scorer is
its own file and one line of `SCORERS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Mapping

from core.names import OFFLINE, OPENAI  # noqa: F401  (re-exported)
from scorer.scorers.base import Scorer

SIMULATION = "simulation"
JUDGE_NAMES = (OFFLINE, OPENAI)

# The part a scorer is built around.
SIMULATOR = "simulator"
JUDGE = "judge"
EMBEDDER = "embedder"


@dataclass(frozen=True)
class ScorerSpec:
    module: str  # under scorer.scorers
    cls: str
    uses: str  # SIMULATOR, JUDGE or EMBEDDER
    options: tuple[str, ...] = ()  # keyword options the class takes, when the request sets them

    def build(self, part: Any, options: Mapping[str, Any]) -> Scorer:
        scorer = getattr(import_module(f"scorer.scorers.{self.module}"), self.cls)
        kwargs = {k: options[k] for k in self.options if options.get(k) is not None}
        return scorer(part, **kwargs)


SCORERS: dict[str, ScorerSpec] = {
    SIMULATION: ScorerSpec("simulation", "SimulationScorer", SIMULATOR),
    "detection": ScorerSpec("detection", "DetectionScorer", JUDGE, ("activation_threshold",)),
    "fuzzing": ScorerSpec(
        "fuzzing", "FuzzingScorer", JUDGE, ("activation_threshold", "random_fraction", "seed")
    ),
    "embedding": ScorerSpec("embedding", "EmbeddingScorer", EMBEDDER, ("activation_threshold",)),
    "holistic": ScorerSpec("holistic", "HolisticScorer", JUDGE, ("top_k",)),
    "intruder": ScorerSpec(
        "intruder", "IntruderScorer", JUDGE, ("activation_threshold", "rounds", "activating_per_round", "seed")
    ),
}

SCORER_NAMES: tuple[str, ...] = tuple(SCORERS)


def scorer_spec(name: str) -> ScorerSpec:
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; one of {', '.join(SCORER_NAMES)}") from None
