"""Few-shot example neurons, kept as data (one JSON file each) apart from the prompt code.

Each file: `{"name", "explanation", "activations": [{"tokens", "values"}, ...]}`, raw
activations on the example's own scale; every style normalises and renders them exactly
like the target neuron, so the examples always show the layout the model is asked to read.
The examples are invented for this project: small, in GPT-2's tokenisation (leading spaces).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from explainer.records import ActivationRecord, NormalizedRecord, as_records, neuron_max, normalize

HERE = Path(__file__).parent

# The order in which the examples appear in a prompt.
DEFAULT_EXAMPLES = ("measurement_units", "parentheses", "speech_verbs")


@dataclass(frozen=True)
class FewShotExample:
    name: str
    explanation: str
    records: tuple[ActivationRecord, ...]

    def normalized(self) -> list[NormalizedRecord]:
        return normalize(self.records, neuron_max(self.records))


def load_example(path: Path) -> FewShotExample:
    data = json.loads(path.read_text(encoding="utf-8"))
    return FewShotExample(
        name=data["name"],
        explanation=data["explanation"],
        records=tuple(as_records(data["activations"])),
    )


@lru_cache(maxsize=None)
def load_examples(names: tuple[str, ...] = DEFAULT_EXAMPLES) -> tuple[FewShotExample, ...]:
    return tuple(load_example(HERE / f"{name}.json") for name in names)
