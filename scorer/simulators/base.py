"""The simulator role: an explanation and texts in, one simulation (or a failure) per text out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from llm.usage import Usage
from scorer.simulation import SequenceSimulation


@dataclass(frozen=True)
class TextFailure:
    """A text the simulator could not predict; it is left out of the score, never zero-filled."""

    index: int
    reason: str


def failures_to_dicts(failures: Sequence[TextFailure]) -> list[dict]:
    """The failures as a response lists them."""
    return [{"index": f.index, "reason": f.reason} for f in failures]


@dataclass
class SimulationRun:
    """One simulator pass over a request's texts.

    `simulations[i]` is None exactly when a `TextFailure` with index i is listed.
    """

    simulations: list[SequenceSimulation | None]
    failures: list[TextFailure] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Simulator(Protocol):
    name: str  # registry name, e.g. "offline", "json", "batched"
    model: str | None  # the model that ran, or None for a model-free simulator

    def simulate(
        self,
        explanation: str,
        texts: Sequence[Sequence[str]],
        *,
        deadline: float | None = None,
    ) -> SimulationRun:
        """Predict a 0-10 activation for every token of every text.

        `deadline` is an absolute `time.monotonic()` instant past which the
        simulator must stop and raise `llm.errors.DeadlineExceeded`.
        """
        ...

    def forecast(self, explanation: str, texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
        """(LLM calls, prompt tokens, most completion tokens) `simulate` would spend on `texts`
        with an empty cache, from the prompts it would send; (0, 0, 0) for a model-free one."""
        ...


@dataclass(frozen=True)
class SimulatorParts:
    """What a simulator may be built from; the composition root fills it, once per request.

    `backend` is None for a simulator that needs none (`needs` empty in its spec).
    """

    model: str | None = None
    backend: Any = None
    cache: Any = None
    concurrency: int = 8
    embedder: Any = None
    # Most tokens of text in one LLM call (SIMULATOR_BATCH_TOKENS); None: the simulator's own.
    batch_tokens: int | None = None
