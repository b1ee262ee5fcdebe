"""Speed and sanity of the offline simulator.

    python -m bench.offline_simulator [--data ../shared/data] [--processes 3]

(a) CPU and wall time of one 20-text x 64-token request (Neuronpedia's size)
    built from real GPT-2 activation texts: lexical matching alone; then, with
    the packaged word table and without it (every word through the model), each
    in fresh processes: the model load, the table load, the warm-up, a cold
    request (a new process after warm-up: nothing cached but the reference
    words), the same request again (warm), a new explanation over the same
    texts, and 20 new texts. Medians over `--processes` processes, with the
    range for the cold rows.
(b) For each of the 19 puzzles, whether the true explanation's pooled
    correlation beats every false one's (None counts as -inf), and the total,
    with the table, without it, and lexically.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from llm.embeddings import LocalEmbedder, default_word_table_path, unavailable_reason
from scorer.math import pooled_correlation
from scorer.simulators.offline import OfflineSimulator

ROOT = Path(__file__).resolve().parent.parent

N_TEXTS, N_TOKENS = 20, 64
ROW = "  {:<58} cpu {:7.1f} ms   wall {:7.1f} ms"
CONFIGS = {"table": True, "no table": False}


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


def measure(data: Path, threads: int, table: bool) -> list[tuple[str, float, float]]:
    """One process's timings, in order: (label, cpu s, wall s)."""
    texts, other = load_request(data, "batch-0.json"), load_request(data, "batch-1.json")
    rows = []
    embedder = LocalEmbedder(intra_op_threads=threads, word_table=table)
    sim = OfflineSimulator(embedder=embedder)
    cpu, wall, _ = timed(embedder.load)
    rows.append((f"model load, once per process ({threads} intra-op threads)", cpu, wall))
    cpu, wall, _ = timed(embedder.load_word_table)
    size = embedder.word_table_size
    rows.append((f"word table load, once per process ({size} words)", cpu, wall))
    cpu, wall, _ = timed(sim.warm_up)
    rows.append((f"warm-up: reference words ({embedder.cache_size()} by the model)", cpu, wall))
    n = embedder.cache_size()
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", texts))
    n, before = embedder.cache_size(), n
    rows.append((f"cold: nothing cached ({n - before} strings by the model)", cpu, wall))
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", texts), repeat=5)
    rows.append(("warm: the same request again", cpu, wall))
    explanations = iter(f"{w} and similar words" for w in ("weather", "money", "music", "sport", "food"))
    cpu, wall, _ = timed(lambda: sim.simulate(next(explanations), texts), repeat=5)
    rows.append(("warm: a new explanation, the same texts", cpu, wall))
    cpu, wall, _ = timed(lambda: sim.simulate("words related to elections", other))
    rows.append((f"cold: 20 new texts ({embedder.cache_size() - n} strings by the model)", cpu, wall))
    return rows


def speed(data: Path, threads: int, processes: int) -> None:
    texts = load_request(data, "batch-0.json")
    print(f"(a) speed: {len(texts)} texts x {N_TOKENS} tokens ({sum(map(len, texts))} tokens)")
    lexical = OfflineSimulator(embedder=None)
    cpu, wall, _ = timed(lambda: lexical.simulate("words related to elections", texts), repeat=5)
    print(ROW.format("lexical only", cpu * 1e3, wall * 1e3))

    reason = unavailable_reason()
    if reason:
        print(f"  semantic matching not measured: {reason}")
        return
    table = default_word_table_path()
    if table.is_file():
        print(f"  word table: {table.relative_to(ROOT)}, {table.stat().st_size / 1e6:.2f} MB")
    for label in CONFIGS:
        runs = []
        for _ in range(processes):  # a fresh process each: nothing cached from another run
            command = [sys.executable, __file__, "--data", str(data), "--threads", str(threads),
                       "--child", label]
            runs.append(json.loads(subprocess.run(command, check=True, capture_output=True,
                                                  text=True).stdout))
        print(f"  -- {label}: median of {processes} processes")
        for i, (name, _, _) in enumerate(runs[0]):
            cpus = [run[i][1] * 1e3 for run in runs]
            walls = [run[i][2] * 1e3 for run in runs]
            line = ROW.format(name, statistics.median(cpus), statistics.median(walls))
            if name.startswith("cold") and processes > 1:
                line += f"   (cpu {min(cpus):.1f}-{max(cpus):.1f})"
            print(line)


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
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per configuration")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.data, args.threads, CONFIGS[args.child])))
        return
    speed(args.data, args.threads, max(1, args.processes))
    n = len(json.loads((args.data / "puzzles" / "puzzles.json").read_text()))
    semantic = unavailable_reason() is None
    for label, emb in (
        ("lexical+semantic, word table", LocalEmbedder() if semantic else None),
        ("lexical+semantic, no word table", LocalEmbedder(word_table=False) if semantic else None),
        ("lexical only", None),
    ):
        if label != "lexical only" and emb is None:
            continue
        sim = OfflineSimulator(embedder=emb)
        print(f"(b) puzzles, {label} ({sim.model}): does the true explanation beat every false one?")
        wins = puzzles(args.data, sim)
        print(f"  total: {wins}/{n}")


if __name__ == "__main__":
    main()
