"""Speed and sanity of the offline simulator.

    python bench/offline_simulator.py [--data ../shared/data]

(a) CPU and wall time of one 20-text x 64-token request (Neuronpedia's size)
    built from real GPT-2 activation texts: lexical matching alone, the model
    load and warm-up, a cold request (no word cached), the same request again
    (warm), a new explanation over the same texts, and 20 new texts.
(b) For each of the 19 puzzles, whether the true explanation's pooled
    correlation beats every false one's (None counts as -inf), and the total.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm.embeddings import LocalEmbedder, unavailable_reason  # noqa: E402
from scorer.math import pooled_correlation  # noqa: E402
from scorer.simulators.offline import OfflineSimulator  # noqa: E402

N_TEXTS, N_TOKENS = 20, 64


def timed(fn, repeat: int = 1):
    """Best-of-`repeat` (cpu seconds, wall seconds) of fn(), and its last result."""
    best_cpu = best_wall = float("inf")
    result = None
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall, result


def speed(data: Path, threads: int) -> None:
    texts, other = load_request(data, "batch-0.json"), load_request(data, "batch-1.json")
    print(f"(a) speed: {len(texts)} texts x {N_TOKENS} tokens ({sum(map(len, texts))} tokens)")
    row = "  {:<52} cpu {:7.1f} ms   wall {:7.1f} ms"

    lexical = OfflineSimulator(embedder=None)
    cpu, wall, _ = timed(lambda: lexical.simulate("words related to elections", texts), repeat=5)
    print(row.format("lexical only", cpu * 1e3, wall * 1e3))

    reason = unavailable_reason()
    if reason:
        print(f"  semantic matching not measured: {reason}")
        return
    embedder = LocalEmbedder(intra_op_threads=threads)
    sim = OfflineSimulator(embedder=embedder)
    cpu, wall, _ = timed(embedder.load)
    print(row.format(f"model load, once per process ({threads} intra-op threads)", cpu * 1e3, wall * 1e3))
    cpu, wall, _ = timed(sim.warm_up)
    print(row.format(f"warm-up: {embedder.cache_size()} reference words, once", cpu * 1e3, wall * 1e3))
    n = embedder.cache_size()
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", texts))
    n, before = embedder.cache_size(), n
    print(row.format(f"cold: nothing cached ({n - before} strings embedded)", cpu * 1e3, wall * 1e3))
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", texts), repeat=5)
    print(row.format("warm: the same request again", cpu * 1e3, wall * 1e3))
    explanations = iter(f"{w} and similar words" for w in ("weather", "money", "music", "sport", "food"))
    cpu, wall, _ = timed(lambda: sim.simulate(next(explanations), texts), repeat=5)
    print(row.format("warm: a new explanation, the same texts", cpu * 1e3, wall * 1e3))
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", other))
    new = embedder.cache_size() - n
    print(row.format(f"cold: 20 new texts ({new} new words to embed)", cpu * 1e3, wall * 1e3))


def load_request(data: Path, name: str) -> list[list[str]]:
    batch = json.loads((data / "neuronpedia-gpt2-small-res-jb" / name).read_text())
    texts = [a["tokens"][:N_TOKENS] for f in batch["features"] for a in f["activations"]]
    return texts[:N_TEXTS]


def puzzle_texts(puzzle: dict) -> tuple[list[list[str]], list[list[float]]]:
    texts, trues = [], []
    for sentence in puzzle["sentences"]:
        tokens = [item if isinstance(item, str) else item[0] for item in sentence]
        values = [0.0 if isinstance(item, str) else float(item[1]) for item in sentence]
        texts.append(tokens)
        trues.append(values)
    return texts, trues


def correlation(simulator: OfflineSimulator, explanation: str, texts, trues) -> float:
    run = simulator.simulate(explanation, texts)
    score = pooled_correlation(trues, [s.expected_activations for s in run.simulations])
    return float("-inf") if score is None else score


def puzzles(data: Path, simulator: OfflineSimulator) -> int:
    puzzles = json.loads((data / "puzzles" / "puzzles.json").read_text())
    wins = 0
    for name, puzzle in puzzles.items():
        texts, trues = puzzle_texts(puzzle)
        true = correlation(simulator, puzzle["explanation"], texts, trues)
        false = [correlation(simulator, f, texts, trues) for f in puzzle["false_explanations"]]
        won = all(true > f for f in false)
        wins += won
        print(
            f"  {name:<11} {'yes' if won else 'no ':3}  true {fmt(true)}  false "
            + " ".join(fmt(f) for f in false)
        )
    return wins


def fmt(x: float) -> str:
    return "  None" if x == float("-inf") else f"{x:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1, help="the model's intra-op threads")
    args = parser.parse_args()
    speed(args.data, args.threads)
    n = len(json.loads((args.data / "puzzles" / "puzzles.json").read_text()))
    embedder = None if unavailable_reason() else LocalEmbedder()
    for label, emb in (("lexical+semantic", embedder), ("lexical only", None)):
        if label == "lexical+semantic" and emb is None:
            continue
        sim = OfflineSimulator(embedder=emb)
        print(f"(b) puzzles, {label} ({sim.model}): does the true explanation beat every false one?")
        wins = puzzles(args.data, sim)
        print(f"  total: {wins}/{n}")


if __name__ == "__main__":
    main()
