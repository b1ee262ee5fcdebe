"""Build web/data/examples.json, the viewer's packaged examples, from ../shared/data.

Three real GPT-2 small SAE latents (layer 0, res-jb; the all-zero latent 1 is left out)
and a few neuron puzzles with their true and false explanations. Every text is cut to
64 tokens around its maximum, as Neuronpedia sends them, so an example stays within
the request limits. Tokens are kept as the data spells them (GPT-2's byte-level
pieces of a character split over two tokens included). Run it again after changing the choice below:

    .venv/bin/python scripts/build_examples.py [SHARED_DATA_DIR]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "web" / "data" / "examples.json"
WINDOW = 64
TOP_TEXTS = 12  # the strongest texts of a latent ...
ZERO_TEXTS = 4  # ... and a few where it is silent, so the score has both kinds
LATENTS = (0, 2, 3)
PUZZLES = ("colors", "feet", "years", "million", "of", "html", "python", "death")


def window(tokens: list[str], values: list[float], size: int = WINDOW) -> tuple[list[str], list[float]]:
    """At most `size` tokens, the maximum about halfway in (the first maximum on a tie)."""
    if len(tokens) <= size:
        return list(tokens), list(values)
    peak = values.index(max(values))
    start = min(max(0, peak - size // 2), len(tokens) - size)
    return tokens[start:start + size], values[start:start + size]


def latent_example(model: str, layer: int, sae_set: str, feature: dict) -> dict:
    # The export lists some texts twice (in several bins): each text once, strongest first.
    unique = {tuple(a["tokens"]): a for a in feature["activations"]}
    texts = sorted(unique.values(), key=lambda a: max(a["values"]), reverse=True)
    active = [a for a in texts if max(a["values"]) > 0][:TOP_TEXTS]
    silent = [a for a in texts if max(a["values"]) <= 0][:ZERO_TEXTS]
    activations = []
    for text in active + silent:
        tokens, values = window(list(text["tokens"]), [float(v) for v in text["values"]])
        activations.append({"tokens": tokens, "values": values})
    index = feature["feature_index"]
    return {
        "id": f"{model}-{layer}-{sae_set}-{index}",
        "title": f"{model} layer {layer} {sae_set}, latent {index}",
        "source": "neuronpedia-gpt2-small-res-jb (SAEDashboard test data, MIT)",
        "activations": activations,
    }


def puzzle_example(puzzle: dict) -> dict:
    activations = []
    for sentence in puzzle["sentences"]:
        tokens = [item if isinstance(item, str) else item[0] for item in sentence]
        values = [0.0 if isinstance(item, str) else float(item[1]) for item in sentence]
        tokens, values = window(tokens, values)
        activations.append({"tokens": tokens, "values": values})
    return {
        "id": f"puzzle-{puzzle['name']}",
        "title": f"puzzle: {puzzle['name']}",
        "source": "automated-interpretability puzzles.json (MIT)",
        "suggestion": puzzle["explanation"],
        "false_explanations": list(puzzle["false_explanations"]),
        "activations": activations,
    }


def build(shared: Path) -> list[dict]:
    examples = []
    for name in ("batch-0.json", "batch-1.json"):
        batch = json.loads((shared / "neuronpedia-gpt2-small-res-jb" / name).read_text())
        for feature in batch["features"]:
            if feature["feature_index"] in LATENTS:
                examples.append(latent_example(batch["model_id"], batch["layer"], batch["sae_set"], feature))
    puzzles = json.loads((shared / "puzzles" / "puzzles.json").read_text())
    examples += [puzzle_example(puzzles[name]) for name in PUZZLES]
    return examples


def main(argv: list[str]) -> None:
    shared = Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "data"
    examples = build(shared)
    # One example a line: small, and a rebuild's diff says which example changed.
    lines = ",\n".join(json.dumps(e, ensure_ascii=False, allow_nan=False, separators=(",", ":")) for e in examples)
    OUT.write_text('{"examples": [\n' + lines + "\n]}\n")
    print(f"{OUT.relative_to(ROOT)}: {len(examples)} examples")


if __name__ == "__main__":
    main(sys.argv)
