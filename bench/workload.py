"""Standard workloads for the benchmarks, built from ../shared/data.

The Neuronpedia workload: 20 texts of 64 tokens, cut from the real activations of
the GPT-2 small res-jb latents (the texts with the highest activations first).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))


def neuronpedia_features() -> list[dict]:
    features = []
    for name in ("batch-0.json", "batch-1.json"):
        path = SHARED_DATA / "neuronpedia-gpt2-small-res-jb" / name
        features.extend(json.loads(path.read_text())["features"])
    return features


def cut_window(tokens: list[str], values: list[float], length: int) -> tuple[list[str], list[float]]:
    """A window of `length` tokens centred where the text activates most."""
    if len(tokens) <= length:
        return list(tokens), list(values)
    peak = max(range(len(values)), key=lambda i: values[i])
    start = min(max(0, peak - length // 2), len(tokens) - length)
    return list(tokens[start : start + length]), list(values[start : start + length])


def standard_request(
    explanation: str = "words about time", feature: int = 0, texts: int = 20, tokens: int = 64
) -> dict:
    """A Neuronpedia-shaped /score request of `texts` x `tokens`."""
    features = [f for f in neuronpedia_features() if any(max(a["values"]) > 0 for a in f["activations"])]
    chosen = features[feature % len(features)]["activations"]
    ranked = sorted(chosen, key=lambda a: max(a["values"]), reverse=True)
    activations = []
    for a in ranked[:texts]:
        t, v = cut_window(a["tokens"], a["values"], tokens)
        activations.append({"tokens": t, "values": v})
    return {"explanation": explanation, "secret": "", "activations": activations}


def pooled_request(explanation: str = "words about time", texts: int = 200, tokens: int = 64) -> dict:
    """A request of `texts` x `tokens` for cost and speed at scale: the texts of every latent of
    the data (latent 0's first, each with its own latent's values), in order and repeated from
    the start when there are fewer than `texts`. Its score means nothing; its size does."""
    pool = []
    for feature in neuronpedia_features():
        ranked = sorted(feature["activations"], key=lambda a: max(a["values"]), reverse=True)
        pool.extend(cut_window(a["tokens"], a["values"], tokens) for a in ranked)
    activations = [{"tokens": t, "values": v} for t, v in (pool[i % len(pool)] for i in range(texts))]
    return {"explanation": explanation, "secret": "", "activations": activations}


def puzzles() -> dict:
    return json.loads((SHARED_DATA / "puzzles" / "puzzles.json").read_text())


def puzzle_records(puzzle: dict) -> list[dict]:
    """A puzzle's sentences as /score `activations` (bare tokens have value 0)."""
    out = []
    for sentence in puzzle["sentences"]:
        tokens, values = [], []
        for item in sentence:
            if isinstance(item, str):
                tokens.append(item)
                values.append(0.0)
            else:
                tokens.append(item[0])
                values.append(float(item[1]))
        out.append({"tokens": tokens, "values": values})
    return out


def true_beats_false(scores: Sequence[float | None]) -> tuple[bool, float]:
    """Whether a puzzle's true explanation (`scores[0]`) outscores every false one, an
    undefined score (None) ranking last; and the best false score (-inf if all are None)."""
    true = -math.inf if scores[0] is None else scores[0]
    best_false = max(-math.inf if s is None else s for s in scores[1:])
    return true > best_false, best_false
