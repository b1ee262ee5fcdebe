"""Scorers: explanation + records -> score, metric, per-text breakdown.

One file per scorer behind `base.Scorer`, chosen by name here. Adding a scorer
touches its own file and one line of `_FACTORIES`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from scorer.scorers.base import Scorer

if TYPE_CHECKING:
    from runtime import Runtime

SIMULATION = "simulation"
OFFLINE = "offline"
OPENAI = "openai"
JUDGE_NAMES = (OFFLINE, OPENAI)


def default_judge(runtime: "Runtime") -> str:
    """Offline when scoring is offline by default (no LLM configured, or SIMULATOR=offline)."""
    return OFFLINE if runtime.settings.default_simulator == OFFLINE else OPENAI


def build_judge(runtime: "Runtime", options: Mapping[str, Any]):
    from scorer.judge import LLMJudge, OfflineJudge
    from scorer.simulators import build_simulator

    name = options.get("judge") or default_judge(runtime)
    if name == OFFLINE:
        return OfflineJudge(build_simulator(OFFLINE, runtime))
    if name != OPENAI:
        raise ValueError(f"unknown judge {name!r}; one of {', '.join(JUDGE_NAMES)}")
    return LLMJudge(
        runtime.require_backend(),
        options.get("model") or runtime.settings.simulator_model,
        batch_size=options.get("batch_size") or 5,
        concurrency=runtime.settings.llm_concurrency,
        cache=runtime.cache,
    )


def _simulation(runtime: "Runtime", options: Mapping[str, Any]) -> Scorer:
    from scorer.scorers.simulation import SimulationScorer

    return SimulationScorer(runtime.simulator(options.get("simulator"), options.get("model")))


def _threshold(options: Mapping[str, Any]) -> dict:
    value = options.get("activation_threshold")
    return {} if value is None else {"activation_threshold": value}


def _detection(runtime: "Runtime", options: Mapping[str, Any]) -> Scorer:
    from scorer.scorers.detection import DetectionScorer

    return DetectionScorer(build_judge(runtime, options), **_threshold(options))


def _fuzzing(runtime: "Runtime", options: Mapping[str, Any]) -> Scorer:
    from scorer.scorers.fuzzing import FuzzingScorer

    extra = {k: options[k] for k in ("random_fraction", "seed") if options.get(k) is not None}
    return FuzzingScorer(build_judge(runtime, options), **_threshold(options), **extra)


def _embedding(runtime: "Runtime", options: Mapping[str, Any]) -> Scorer:
    from scorer.scorers.embedding import EmbeddingScorer

    return EmbeddingScorer(runtime.text_embedder(options.get("model")), **_threshold(options))


_FACTORIES: dict[str, Callable[["Runtime", Mapping[str, Any]], Scorer]] = {
    SIMULATION: _simulation,
    "detection": _detection,
    "fuzzing": _fuzzing,
    "embedding": _embedding,
}

SCORER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def build_scorer(name: str, runtime: "Runtime", options: Mapping[str, Any] | None = None) -> Scorer:
    """The scorer `name`, its judge, simulator or embedder built from `runtime` and `options`.

    Options (each optional): simulator, model, judge, activation_threshold,
    batch_size, random_fraction, seed; a scorer ignores those it has no use for.
    Raises BackendUnavailable when it needs an LLM or a model that is not there.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; one of {', '.join(SCORER_NAMES)}") from None
    return factory(runtime, options or {})
