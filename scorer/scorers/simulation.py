"""The simulation scorer (Bills et al. 2023): correlate simulated with true activations."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.records import ActivationRecord
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer import math
from scorer.scorers.quantiles import correlation_by_bin
from scorer.simulation import ScoredSequenceSimulation, SequenceSimulation
from scorer.simulators.base import Simulator, TextFailure

METRIC = "pearson"


@dataclass
class SimulationScore:
    score: float | None
    # One entry per input text, same order; None where the text failed.
    scored: list[ScoredSequenceSimulation | None]
    records: list[ActivationRecord]
    failures: list[TextFailure] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    metric: str = METRIC

    def predicted(self) -> list[list[float] | None]:
        """Per text its simulated activations, None where it failed."""
        return [None if s is None else list(s.simulation.expected_activations) for s in self.scored]

    def simulations_to_dicts(self) -> list[dict]:
        out = []
        failed = {f.index: f.reason for f in self.failures}
        for i, (scored, record) in enumerate(zip(self.scored, self.records)):
            if scored is not None:
                out.append(scored.to_dict())
                continue
            out.append(
                {
                    "simulation": None,
                    "true_activations": [float(v) for v in record.values],
                    "ev_correlation_score": None,
                    "rsquared_score": None,
                    "absolute_dev_explained_score": None,
                    "error": failed.get(i, "not simulated"),
                }
            )
        return out


def score_simulation(record: ActivationRecord, simulation: SequenceSimulation) -> ScoredSequenceSimulation:
    predicted = simulation.expected_activations
    return ScoredSequenceSimulation(
        simulation=simulation,
        true_activations=list(record.values),
        ev_correlation_score=math.pearson(record.values, predicted),
        rsquared_score=math.rsquared(record.values, predicted),
        absolute_dev_explained_score=math.absolute_dev_explained(record.values, predicted),
    )


def _checked(simulation: SequenceSimulation | None, record: ActivationRecord) -> str | None:
    """Why a simulator's output cannot be scored, or None when it can."""
    if simulation is None:
        return "no simulation"
    if list(simulation.tokens) != list(record.tokens):
        return "the simulation's tokens differ from the text's"
    values = np.asarray(simulation.expected_activations, dtype=np.float64)
    if values.shape != (len(record.tokens),) or not np.all(np.isfinite(values)):
        return "the simulation's predictions are not one finite number per token"
    return None


def score_explanation(
    explanation: str,
    records: Sequence[ActivationRecord],
    simulator: Simulator,
    *,
    deadline: float | None = None,
) -> SimulationScore:
    """Simulate every text and score: pooled correlation over the texts that succeeded.

    Raises UpstreamError when no text could be simulated: a score from nothing
    (or from zero-filled failures) would be a lie.
    """
    records = list(records)
    run = simulator.simulate(explanation, [r.tokens for r in records], deadline=deadline)
    failures = {f.index: f for f in run.failures}
    scored: list[ScoredSequenceSimulation | None] = []
    for i, record in enumerate(records):
        simulation = run.simulations[i] if i < len(run.simulations) else None
        problem = None if i in failures else _checked(simulation, record)
        if i in failures or problem:
            failures.setdefault(i, TextFailure(i, problem or "failed"))
            scored.append(None)
            continue
        scored.append(score_simulation(record, simulation))

    ok = [s for s in scored if s is not None]
    if not ok:
        reasons = "; ".join(f"[{f.index}] {f.reason}" for f in sorted(failures.values(), key=lambda f: f.index)[:5])
        raise UpstreamError(f"the simulator failed on every text: {reasons}")
    score = math.pooled_correlation(
        [s.true_activations for s in ok], [s.simulation.expected_activations for s in ok]
    )
    return SimulationScore(
        score=score,
        scored=scored,
        records=records,
        failures=sorted(failures.values(), key=lambda f: f.index),
        usage=run.usage,
    )


class SimulationScorer:
    """`score_explanation` behind the Scorer interface (the registry's "simulation")."""

    name = "simulation"
    metric = METRIC

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.scored_by = {
            "name": simulator.name,
            "model": simulator.model,
            "offline": simulator.name == "offline",
        }

    def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        *,
        deadline: float | None = None,
    ):
        from scorer.scorers.base import ScorerResult

        result = score_explanation(explanation, records, self.simulator, deadline=deadline)
        per_text = []
        for i, scored in enumerate(result.scored):
            entry = {"index": i}
            for key in ("ev_correlation_score", "rsquared_score", "absolute_dev_explained_score"):
                entry[key] = getattr(scored, key) if scored is not None else None
            per_text.append(entry)
        return ScorerResult(
            score=result.score,
            metric=result.metric,
            per_text=per_text,
            failures=result.failures,
            usage=result.usage,
            details={
                "texts_scored": sum(s is not None for s in result.scored),
                "quantiles": correlation_by_bin(result.records, result.predicted()),
            },
        )
