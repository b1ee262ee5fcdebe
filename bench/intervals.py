"""What a score's bootstrap interval costs: 20 texts x 64 tokens, 1,000 resamples.

    .venv/bin/python -m bench.intervals [--repeat 200] [--write]

The true activations are the standard workload's (`bench.workload.standard_request`: 20
texts of 64 tokens of a GPT-2 small res-jb latent); the simulation is the truth plus seeded
noise (the interval's cost does not depend on the values, only on the texts' and tokens'
number). Also timed, for the same texts: the paired comparison of 5 explanations (10
pairs, Holm, ranking), and the intervals of the classifier scorers (balanced accuracy over
20 answers, ROC-AUC over 20 similarities). Median wall and CPU time per call over
`--repeat` calls, after one warm-up call. `--write` adds the table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bench.workload import standard_request
from scorer import stats

ROOT = Path(__file__).resolve().parent.parent

SECTION = "## Score intervals and comparisons (issue: scores a frontend can trust)"
TARGET_MS = 5.0


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up: imports, first allocation
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    request = standard_request()
    trues = [np.asarray(a["values"], dtype=np.float64) for a in request["activations"]]
    rng = np.random.default_rng(0)
    simulations = [
        [t + rng.normal(0, noise * (np.std(t) + 1e-3), t.size) for t in trues] for noise in (0.5, 1, 2, 4, 8)
    ]
    labels = [bool(t.max() >= 0.3 * max(x.max() for x in trues)) for t in trues]
    answers = [bool(y) if i % 4 else not y for i, y in enumerate(labels)]
    similarities = rng.random(len(trues))
    shape = f"{len(trues)} texts x {len(trues[0])} tokens"

    rows = [
        ("pooled-correlation interval (simulation)", lambda: stats.bootstrap_interval(trues, simulations[0])),
        ("balanced-accuracy interval (detection, fuzzing)", lambda: stats.balanced_accuracy_interval(labels, answers)),
        ("ROC-AUC interval (embedding)", lambda: stats.auc_interval(similarities, labels)),
        ("paired comparison of 5 explanations (10 pairs)", lambda: stats.paired_bootstrap(trues, simulations)),
    ]
    results = [(name, *timed(fn, args.repeat)) for name, fn in rows]
    interval = stats.bootstrap_interval(trues, simulations[0])

    print(f"{shape}, {stats.DEFAULT_RESAMPLES} resamples, median of {args.repeat} calls")
    print("what | wall | CPU")
    for name, wall, cpu in results:
        print(f"{name} | {wall:.2f} ms | {cpu:.2f} ms")
    print(f"(target for the simulation interval: under {TARGET_MS:g} ms)")
    print(f"example interval: [{interval.low:.4f}, {interval.high:.4f}] at level {interval.level}")

    if args.write:
        table = "\n".join(f"| {name} | {wall:.2f} ms | {cpu:.2f} ms |" for name, wall, cpu in results)
        text = (
            f"{SECTION}\n\n"
            f"`.venv/bin/python -m bench.intervals --repeat {args.repeat} --write` "
            f"({shape} of the standard workload, {stats.DEFAULT_RESAMPLES} resamples, "
            f"median of {args.repeat} calls after a warm-up)\n\n"
            "| what | wall | CPU |\n|---|---|---|\n"
            f"{table}\n\n"
            "The resamples are whole texts; each resample's pooled correlation is one row of a\n"
            "(resamples x texts) count matrix times the texts' sufficient statistics (n, Σx, Σy,\n"
            "Σx², Σy², Σxy), so the cost grows with texts x resamples, not with tokens. The\n"
            f"target for the simulation interval was under {TARGET_MS:g} ms.\n"
        )
        path = ROOT / "bench" / "RESULTS.md"
        current = path.read_text(encoding="utf-8")
        if SECTION in current:
            head, _, tail = current.partition(SECTION)
            rest = tail.split("\n## ", 1)
            tail = ("\n## " + rest[1]) if len(rest) > 1 else ""
            current = head.rstrip() + "\n\n" + text + tail
        else:
            current = current.rstrip() + "\n\n" + text
        path.write_text(current, encoding="utf-8")
        print(f"written to {path}")


if __name__ == "__main__":
    main()
