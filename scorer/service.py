"""`POST /score`, `POST /compare` and `POST /similarity`: plain inputs and built objects in,
the response body out.

The HTTP layer builds the simulator, scorer or embedder (through the composition root) and
calls these; nothing here imports Flask or reads settings.
"""
from __future__ import annotations

from typing import Any, Sequence

from core.names import OFFLINE
from core.records import ActivationRecord
from llm.usage import Usage
from scorer import math
from scorer.errors import ScorerInputError
from scorer.intervals import COMPARABLE, comparable_message, paired_statistic, score_interval
from scorer.scorers import SIMULATION
from scorer.scorers.base import Scorer, ScorerResult
from scorer.scorers.quantiles import correlation_by_bin
from scorer.scorers.simulation import SimulationScore, score_explanation
from scorer.similarity import explanation_similarity
from scorer.simulators.base import Simulator, failures_to_dicts
from scorer.stats import interval_fields, paired_bootstrap, paired_bootstrap_statistic

NULL, ZERO = "null", "zero"  # UNDEFINED_SCORE: how an undefined score is written
TOP, RANDOM = "top", "random"
_PER_TEXT_SCORES = ("ev_correlation_score", "rsquared_score", "absolute_dev_explained_score")


# -- /score ----------------------------------------------------------------------------


def score_by_simulation(
    explanation: str,
    records: Sequence[ActivationRecord],
    simulator: Simulator,
    *,
    deadline: float | None,
    random_records: Sequence[ActivationRecord] = (),
    undefined: str = NULL,
) -> dict:
    """The /score response for `scorer: "simulation"`. With `random_records`, `score` pools the
    top and the random texts (the paper's "all" score) and `top_score`/`random_score` join it."""
    result = score_explanation(explanation, [*records, *random_records], simulator, deadline=deadline)
    return storable(simulation_payload(result, simulator, n_top=len(records), with_groups=bool(random_records)), undefined)


def simulation_payload(result: SimulationScore, simulator: Simulator, *, n_top: int, with_groups: bool) -> dict:
    ok = [s for s in result.scored if s is not None]
    payload: dict[str, Any] = {
        "score": result.score,
        "simulations": result.simulations_to_dicts(),
        "scorer": SIMULATION,
        "metric": result.metric,
        "simulator": {"name": simulator.name, "model": simulator.model, "offline": simulator.name == OFFLINE},
        "texts_scored": len(ok),
        **interval_fields(
            score_interval(
                SIMULATION,
                trues=[s.true_activations for s in ok],
                predicteds=[s.simulation.expected_activations for s in ok],
            )
        ),
        "failures": failures_to_dicts(result.failures),
        "usage": result.usage.to_dict(),
        "quantiles": correlation_by_bin(result.records, result.predicted()),
    }
    if with_groups:
        groups = [TOP] * n_top + [RANDOM] * (len(result.scored) - n_top)
        payload["groups"] = groups  # per entry of `simulations`: top texts first, then random ones
        for name, group in (("top_score", TOP), ("random_score", RANDOM)):
            chosen = [s for s, g in zip(result.scored, groups) if s is not None and g == group]
            payload[name] = (
                math.pooled_correlation([s.true_activations for s in chosen], [s.simulation.expected_activations for s in chosen])
                if chosen
                else None
            )
    return payload


def score_by_classifier(
    explanation: str,
    records: Sequence[ActivationRecord],
    scorer: Scorer,
    *,
    deadline: float | None,
    undefined: str = NULL,
) -> dict:
    """The /score response for detection, fuzzing or embedding: Neuronpedia's keys, `simulations` empty.

    Raises ScorerInputError when the texts cannot be scored this way (HTTP 400).
    """
    return storable(classifier_payload(scorer.score(explanation, records, deadline=deadline), scorer), undefined)


def classifier_payload(result: ScorerResult, scorer: Scorer) -> dict:
    """A scorer that breaks its result down by activation level (detection, fuzzing) puts
    `quantiles` in its details; the response lifts it beside `score`, where the simulation
    scorer's is."""
    details = dict(result.details)
    extra = {"quantiles": details.pop("quantiles")} if "quantiles" in details else {}
    return {
        "score": result.score,
        "simulations": [],
        "scorer": scorer.name,
        "metric": result.metric,
        "judge": scorer.scored_by,
        "offline": scorer.scored_by["offline"],
        "texts_scored": details.pop("texts_scored", None),
        **interval_fields(score_interval(scorer.name, result.per_text, details=result.details)),
        "texts": result.per_text,
        "failures": failures_to_dicts(result.failures),
        "usage": result.usage.to_dict(),
        "details": details,
        **extra,
    }


def storable(payload: dict, undefined: str) -> dict:
    """With UNDEFINED_SCORE=zero, every undefined score is written 0.0 (Neuronpedia stores them
    as numbers) and listed in `undefined_scores`: text indices, and the pooled scores' names."""
    places: list[int | str] = []
    for i, entry in enumerate(payload.get("simulations", [])):
        if any(entry.get(key) is None for key in _PER_TEXT_SCORES):
            places.append(i)
            if undefined == ZERO:
                for key in _PER_TEXT_SCORES:
                    if entry.get(key) is None:
                        entry[key] = 0.0
    for key in ("score", "top_score", "random_score"):
        if key in payload and payload[key] is None:
            places.append(key)
            if undefined == ZERO:
                payload[key] = 0.0
    payload["undefined_scores"] = places
    return payload


# -- /compare ---------------------------------------------------------------------------


def compare_by_simulation(
    explanations: Sequence[str],
    records: Sequence[ActivationRecord],
    simulator: Simulator,
    *,
    deadline: float | None,
    random_records: Sequence[ActivationRecord] = (),
    undefined: str = NULL,
) -> dict:
    """Every explanation scored on the same texts by the same simulator, then a paired bootstrap
    over those texts for every pair (Holm-adjusted) and a ranking that groups explanations not
    distinguishable at 0.05."""
    texts = [*records, *random_records]
    results = [score_explanation(e, texts, simulator, deadline=deadline) for e in explanations]
    comparison = paired_bootstrap(
        [r.values for r in texts],
        [[None if s is None else s.simulation.expected_activations for s in result.scored] for result in results],
    )
    answers = [
        storable(simulation_payload(r, simulator, n_top=len(records), with_groups=bool(random_records)), undefined)
        for r in results
    ]
    return _compared(explanations, answers, comparison, undefined, sum((r.usage for r in results), Usage()))


def compare_by_classifier(
    explanations: Sequence[str],
    records: Sequence[ActivationRecord],
    scorer: Scorer,
    *,
    deadline: float | None,
    undefined: str = NULL,
) -> dict:
    """As compare_by_simulation, for a classifier scorer: its score recomputed on resamples of
    the texts every explanation has an answer for."""
    if scorer.name not in COMPARABLE:  # before any LLM call
        raise ScorerInputError(comparable_message(scorer.name))
    results = [scorer.score(e, records, deadline=deadline) for e in explanations]
    points, statistics, n_items = paired_statistic(scorer.name, [r.per_text for r in results])
    comparison = paired_bootstrap_statistic(points, statistics, n_items)
    answers = [storable(classifier_payload(r, scorer), undefined) for r in results]
    return _compared(explanations, answers, comparison, undefined, sum((r.usage for r in results), Usage()))


# Fewer texts than this and a bootstrap has too few distinct resamples to call a difference
# significant (two texts give three): the pairs keep their numbers, none is called significant.
MIN_TEXTS_FOR_SIGNIFICANCE = 5


def _compared(explanations: Sequence[str], answers: list[dict], comparison: Any, undefined: str, usage: Usage) -> dict:
    summary = comparison.to_dict()
    if len(summary["texts"]) < MIN_TEXTS_FOR_SIGNIFICANCE:
        for pair in summary["pairs"]:
            pair["significant"] = False
        for entry in summary["ranking"]:
            if entry["rank"] is not None:
                entry["rank"] = 1
        summary["notes"].append(
            f"{len(summary['texts'])} texts compared: fewer than {MIN_TEXTS_FOR_SIGNIFICANCE}, too few to call "
            "any difference significant; every defined score shares rank 1"
        )
    if undefined == ZERO:
        for entry in summary["ranking"]:
            if entry["score"] is None:
                entry["score"] = 0.0
    return {
        "explanations": list(explanations),
        "results": answers,
        "pairs": summary["pairs"],
        "ranking": summary["ranking"],
        "texts_compared": summary["texts"],
        "alpha": summary["alpha"],
        "correction": summary["correction"],
        "method": summary["method"],
        "notes": summary["notes"],
        "usage": usage.to_dict(),
    }


def forecast(simulator: Any, explanations: Sequence[str], texts: Sequence[Sequence[str]]) -> dict:
    """What scoring `explanations` on `texts` would cost before any call: LLM calls, prompt
    tokens, and the most completion tokens the calls may write (cache hits make it less)."""
    calls = prompt = completion = 0
    for explanation in explanations:
        c, p, o = simulator.forecast(explanation, texts)
        calls, prompt, completion = calls + c, prompt + p, completion + o
    return {"llm_calls": calls, "prompt_tokens": prompt, "max_completion_tokens": completion}


# -- /similarity ----------------------------------------------------------------------


def similarity(explanation: str, references: Sequence[str], embedder: Any, *, deadline: float | None) -> dict:
    """The /similarity response: cosine similarity with each reference, and their mean."""
    result = explanation_similarity(explanation, references, embedder, deadline=deadline)
    return {
        "similarities": result.similarities,
        "mean": result.mean,
        "metric": "cosine",
        "embedder": {"name": embedder.name, "model": embedder.model, "offline": embedder.offline},
        "offline": embedder.offline,
        "usage": result.usage.to_dict(),
    }
