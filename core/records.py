"""A neuron's activations on one text: the input of every scorer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class ActivationRecord:
    tokens: list[str]
    values: list[float]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.values):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.values)} values")

    @property
    def max_value(self) -> float:
        return max(self.values) if self.values else 0.0


def to_records(texts: Iterable[Any]) -> list[ActivationRecord]:
    """Records copied from anything with `tokens` and `values` (the API's ActivationText)."""
    return [ActivationRecord(list(t.tokens), list(t.values)) for t in texts]
