"""The wire shapes of a simulation (the fields of OpenAI's neuron-explainer dataclasses)."""
from __future__ import annotations

from dataclasses import dataclass, field

ACTIVATION_SCALE = "simulated_normalized_activations"


@dataclass
class SequenceSimulation:
    """Predicted activations for one text; `tokens` are the caller's, untouched."""

    tokens: list[str]
    expected_activations: list[float]
    # Per token, the values and probabilities of the simulator's distribution,
    # where it has one (logprob simulators); empty lists otherwise.
    distribution_values: list[list[float]] = field(default_factory=list)
    distribution_probabilities: list[list[float]] = field(default_factory=list)
    activation_scale: str = ACTIVATION_SCALE
    uncalibrated_simulation: None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.expected_activations):
            raise ValueError(
                f"{len(self.expected_activations)} predictions for {len(self.tokens)} tokens"
            )

    def to_dict(self) -> dict:
        return {
            # As the reference implementation writes it, so its JSON loader rebuilds the dataclass.
            "dataclass_name": "SequenceSimulation",
            "tokens": list(self.tokens),
            "expected_activations": [float(x) for x in self.expected_activations],
            "activation_scale": self.activation_scale,
            "distribution_values": self.distribution_values,
            "distribution_probabilities": self.distribution_probabilities,
            "uncalibrated_simulation": self.uncalibrated_simulation,
        }


@dataclass
class ScoredSequenceSimulation:
    simulation: SequenceSimulation
    true_activations: list[float]
    ev_correlation_score: float | None
    rsquared_score: float | None
    absolute_dev_explained_score: float | None

    def to_dict(self) -> dict:
        return {
            "dataclass_name": "ScoredSequenceSimulation",
            "simulation": self.simulation.to_dict(),
            "true_activations": [float(x) for x in self.true_activations],
            "ev_correlation_score": self.ev_correlation_score,
            "rsquared_score": self.rsquared_score,
            "absolute_dev_explained_score": self.absolute_dev_explained_score,
        }
