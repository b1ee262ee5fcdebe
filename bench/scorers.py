"""Quality, speed and cost of the scorers: simulation, detection, fuzzing, embedding, holistic, intruder.

    python -m bench.scorers                     # (a) puzzles offline, (b) tokens against the stub
    python -m bench.scorers --puzzles           # (a) only
    python -m bench.scorers --workload          # (b) only
    python -m bench.scorers --puzzles --base-url http://localhost:8000/v1 --model M [--api-key K]

(a) Puzzles: for each of the 19 puzzles and every scorer that runs offline
    (simulation with the offline simulator, detection and fuzzing with the
    offline judge, embedding with the packaged model), does the true
    explanation outscore every false one (None counts as -inf)? A puzzle a
    scorer cannot score (a 400: one class only) is "n/a" and counts as a miss.
    Time per score (model load excluded, reported apart) and LLM tokens per score.
    With --base-url (or OPENAI_API_KEY / OPENAI_BASE_URL) the LLM judge's
    detection, fuzzing and holistic run too, against that model.
    The intruder scorer reads no explanation, so it is reported apart: its
    accuracy on each puzzle (the latent as written) beside the same puzzle with
    each sentence's activations moved to seeded random tokens of that sentence
    (a latent with nothing to share), against chance.
(b) Cost: the standard Neuronpedia workload (20 texts x 64 tokens of one
    latent, `bench.workload.standard_request`) scored once by each LLM scorer
    against the loopback stub (a keyword oracle; it reports tiktoken cl100k
    counts as usage): LLM calls, prompt and completion tokens per score, beside
    the simulation scorer's (batched and json simulators); holistic (one call)
    and intruder (one call a round, default 10 rounds) included. The classifiers need
    non-activating texts: the standard request has them for latent 0 (14 of its
    20 texts are below 0.3 x its max); when it has none, the latent's lowest
    texts are added (`with_low_texts`) and the count is printed.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

from bench.workload import (
    cut_window,
    neuronpedia_features,
    puzzle_records,
    puzzles,
    standard_request,
    true_beats_false,
)
from core.records import ActivationRecord
from llm.errors import LLMError
from runtime import Runtime
from runtime.settings import Settings
from scorer.scorers.base import ScorerInputError, split_classes
from tests.stub_openai import StubOpenAI, scorer_judges

ROOT = Path(__file__).resolve().parent.parent

# Feature 0 of the workload fires on military units ( Brigade, battalion, Regiment...).
WORKLOAD_EXPLANATION = "military units such as brigades, battalions and regiments"
OFFLINE_SCORERS = {
    "simulation": {"simulator": "offline"},
    "detection": {"judge": "offline"},
    "fuzzing": {"judge": "offline"},
    "embedding": {},
    "holistic": {"judge": "offline"},
}
INTRUDER_ROUNDS = 20


def records_of(activations: list[dict]) -> list[ActivationRecord]:
    return [ActivationRecord(list(a["tokens"]), list(a["values"])) for a in activations]


def fmt(score: float | None) -> str:
    return "None" if score is None else f"{score:+.2f}"


# -- (a) puzzles ------------------------------------------------------------------------------


def puzzle_harness(args: argparse.Namespace) -> None:
    runtime = Runtime(Settings(cache_path=""))
    started = time.perf_counter()
    if runtime.embedder is not None:
        runtime.embedder.warm_up()
    load_ms = (time.perf_counter() - started) * 1000
    scorers = {name: runtime.scorer(name, options) for name, options in OFFLINE_SCORERS.items()}

    llm_runtime = None
    api_key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY", "")
    base_url = args.base_url if args.base_url is not None else os.environ.get("OPENAI_BASE_URL", "")
    if api_key or base_url:
        llm_runtime = Runtime(
            Settings(openai_api_key=api_key, openai_base_url=base_url, simulator_model=args.model, cache_path="")
        )
        for name in ("detection", "fuzzing", "holistic"):
            scorers[f"{name}/llm"] = llm_runtime.scorer(name, {"judge": "openai", "model": args.model})

    print(f"(a) puzzles: does the true explanation outscore every false one? (model load {load_ms:.0f} ms, once)")
    for name, scorer in scorers.items():
        print(f"    {name:<12} {scorer.metric:<18} scored by {scorer.scored_by['name']} / {scorer.scored_by['model']}")
    all_puzzles = puzzles()
    wins = {name: 0 for name in scorers}
    unscorable = {name: 0 for name in scorers}
    errors = {name: 0 for name in scorers}
    times: dict[str, list[float]] = {name: [] for name in scorers}
    tokens = {name: 0 for name in scorers}
    scores_made = {name: 0 for name in scorers}
    print(f"    {'puzzle':<12}" + "".join(f"{name:>16}" for name in scorers))
    for pname, puzzle in all_puzzles.items():
        records = records_of(puzzle_records(puzzle))
        cells = []
        for name, scorer in scorers.items():
            try:
                scores = []
                for explanation in [puzzle["explanation"], *puzzle["false_explanations"]]:
                    t0 = time.perf_counter()
                    result = scorer.score(explanation, records, deadline=time.monotonic() + 300)
                    times[name].append(time.perf_counter() - t0)
                    tokens[name] += result.usage.total_tokens
                    scores_made[name] += 1
                    scores.append(result.score)
            except ScorerInputError:
                unscorable[name] += 1
                cells.append("n/a")
                continue
            except LLMError as exc:
                errors[name] += 1
                cells.append("error")
                print(f"    ! {name} on {pname}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            won, best_false = true_beats_false(scores)
            wins[name] += won
            best = "None" if best_false == -math.inf else f"{best_false:.2f}"
            mine = "None" if scores[0] is None else f"{scores[0]:.2f}"
            cells.append(f"{'pass' if won else 'fail'} {mine}/{best}")
        print(f"    {pname:<12}" + "".join(f"{c:>16}" for c in cells))
    total = len(all_puzzles)
    print("    cells: pass|fail <true score>/<best false score>")
    print(f"    {'passed':<12}" + "".join(f"{f'{wins[n]}/{total}':>16}" for n in scorers))
    print(f"    {'n/a (400)':<12}" + "".join(f"{unscorable[n]:>16}" for n in scorers))
    print(f"    {'errors':<12}" + "".join(f"{errors[n]:>16}" for n in scorers))
    print(
        f"    {'ms/score p50':<12}"
        + "".join(f"{statistics.median(times[n]) * 1000 if times[n] else 0:>16.1f}" for n in scorers)
    )
    print(f"    {'ms/score max':<12}" + "".join(f"{max(times[n], default=0) * 1000:>16.1f}" for n in scorers))
    print(
        f"    {'tokens/score':<12}"
        + "".join(f"{tokens[n] / scores_made[n] if scores_made[n] else 0:>16.0f}" for n in scorers)
    )
    intruders = {"intruder": runtime.scorer("intruder", {"judge": "offline", "rounds": INTRUDER_ROUNDS})}
    if llm_runtime is not None:
        intruders["intruder/llm"] = llm_runtime.scorer(
            "intruder", {"judge": "openai", "model": args.model, "rounds": INTRUDER_ROUNDS}
        )
    intruder_harness(all_puzzles, intruders)
    if llm_runtime is not None and llm_runtime.backend is not None:
        llm_runtime.backend.close()


def scrambled(records: list[ActivationRecord], seed: int = 0) -> list[ActivationRecord]:
    """Each sentence's activations moved to random tokens of the same sentence (seeded)."""
    rng = random.Random(seed)
    out = []
    for record in records:
        values = list(record.values)
        rng.shuffle(values)
        out.append(ActivationRecord(list(record.tokens), values))
    return out


def intruder_harness(all_puzzles: dict, scorers: dict) -> None:
    """The intruder's accuracy on each puzzle as written, and scrambled; no explanation is read."""
    print()
    print(f"    intruder ({INTRUDER_ROUNDS} rounds, seed 0; no explanation): accuracy as written / scrambled")
    print(f"    {'puzzle':<12}" + "".join(f"{name:>22}" for name in scorers) + f"{'chance':>9}")
    sums = {name: [0.0, 0.0, 0] for name in scorers}
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for pname, puzzle in all_puzzles.items():
        records = records_of(puzzle_records(puzzle))
        cells, chance = [], None
        for name, scorer in scorers.items():
            try:
                t0 = time.perf_counter()
                plain = scorer.score(puzzle["explanation"], records, deadline=time.monotonic() + 300)
                times[name].append(time.perf_counter() - t0)
                mixed = scorer.score(puzzle["explanation"], scrambled(records), deadline=time.monotonic() + 300)
            except ScorerInputError:
                cells.append("n/a")
                continue
            except LLMError as exc:
                cells.append("error")
                print(f"    ! {name} on {pname}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            chance = plain.details["chance"]
            source = "" if plain.details["intruder_source"] == "non_activating" else "*"
            sums[name][0] += plain.score
            sums[name][1] += mixed.score
            sums[name][2] += 1
            cells.append(f"{plain.score:.2f} / {mixed.score:.2f}{source}")
        print(f"    {pname:<12}" + "".join(f"{c:>22}" for c in cells) + f"{'' if chance is None else f'{chance:.2f}':>9}")
    print(
        f"    {'mean':<12}"
        + "".join(
            f"{f'{a / n:.2f} / {b / n:.2f}' if n else '-':>22}" for a, b, n in sums.values()
        )
    )
    print(f"    {'ms/score p50':<12}" + "".join(
        f"{statistics.median(times[n]) * 1000 if times[n] else 0:>22.1f}" for n in scorers))
    print("    * no text below the cut: the lowest fifth of the texts are the intruders")


# -- (b) cost on the standard workload --------------------------------------------------------


def with_low_texts(request: dict, feature: int = 0, n: int = 10, tokens: int = 64, threshold: float = 0.3) -> tuple[dict, int]:
    """The request, plus the latent's `n` lowest texts when none of its texts is below the cut."""
    records = records_of(request["activations"])
    try:
        split_classes(records, threshold, "bench")
        return request, 0
    except ScorerInputError:
        pass
    features = [f for f in neuronpedia_features() if any(max(a["values"]) > 0 for a in f["activations"])]
    chosen = features[feature % len(features)]["activations"]
    low = sorted(chosen, key=lambda a: max(a["values"]))[:n]
    extra = [dict(zip(("tokens", "values"), cut_window(a["tokens"], a["values"], tokens))) for a in low]
    return {**request, "activations": request["activations"] + extra}, len(extra)


def cost(args: argparse.Namespace) -> None:
    request, added = with_low_texts(standard_request(WORKLOAD_EXPLANATION, texts=args.texts, tokens=args.tokens))
    records = records_of(request["activations"])
    labels, cut = split_classes(records, 0.3, "bench")
    n_tokens = sum(len(r.tokens) for r in records)
    print(
        f"(b) cost per score: {len(records)} texts ({n_tokens} tokens; {sum(labels)} activating at >= {cut:.3g}, "
        f"{len(labels) - sum(labels)} not; {added} low texts added), stub delay {args.delay * 1000:.0f} ms"
    )
    print(f"    explanation: {WORKLOAD_EXPLANATION!r}")
    runs = {
        "simulation/batched": ("simulation", {"simulator": "batched"}),
        "simulation/json": ("simulation", {"simulator": "json"}),
        "simulation/compact": ("simulation", {"simulator": "compact"}),
        "detection": ("detection", {"judge": "openai"}),
        "fuzzing": ("fuzzing", {"judge": "openai"}),
        "embedding/api": ("embedding", {}),
        "holistic": ("holistic", {"judge": "openai"}),
        "intruder": ("intruder", {"judge": "openai"}),
    }
    rows = {}
    with StubOpenAI(scorer_judges(), delay=args.delay) as stub:
        settings = Settings(
            openai_base_url=stub.base_url,
            simulator_model="stub-model",
            embedding_backend="openai",
            embedding_model="stub-embedding",
            llm_max_retries=0,
            llm_concurrency=args.concurrency,
            cache_path="",
        )
        runtime = Runtime(settings)
        for label, (name, options) in runs.items():
            scorer = runtime.scorer(name, {**options, "batch_size": args.batch_size})
            stub.reset()
            started = time.perf_counter()
            result = scorer.score(request["explanation"], records, deadline=time.monotonic() + 120)
            wall = time.perf_counter() - started
            judged = result.details.get("texts_scored")
            rows[label] = dict(
                calls=result.usage.llm_calls,
                prompt=result.usage.prompt_tokens,
                completion=result.usage.completion_tokens,
                total=result.usage.total_tokens,
                judged=judged,
                wall=wall,
                failed=len(result.failures),
                score=result.score,
                metric=result.metric,
            )
        runtime.backend.close()
    base = rows["simulation/json"]["total"]
    print(
        f"    {'scorer':<20}{'calls':>6}{'prompt':>9}{'compl.':>8}{'total':>8}{'x fewer than json':>19}"
        f"{'texts':>7}{'tok/text':>9}{'wall ms':>9}{'failed':>7}   score"
    )
    for label, r in rows.items():
        per_text = r["total"] / r["judged"] if r["judged"] else 0
        print(
            f"    {label:<20}{r['calls']:>6}{r['prompt']:>9}{r['completion']:>8}{r['total']:>8}"
            f"{base / max(r['total'], 1):>19.1f}{r['judged'] or 0:>7}{per_text:>9.0f}{r['wall'] * 1000:>9.0f}"
            f"{r['failed']:>7}   {fmt(r['score'])} {r['metric']}"
        )
    print("    (fuzzing judges the activating texts only; embedding tokens are the embeddings endpoint's input;")
    print("     holistic reads the top 12 texts in one call; intruder: 10 rounds of 5 texts, one call each;")
    print("     texts = texts the score rests on)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", action="store_true", help="run (a) only")
    parser.add_argument("--workload", action="store_true", help="run (b) only")
    parser.add_argument("--base-url", help="an OpenAI-compatible server for (a)'s LLM judge; default OPENAI_BASE_URL")
    parser.add_argument("--api-key", help="its key; default OPENAI_API_KEY")
    parser.add_argument("--model", default=os.environ.get("SIMULATOR_MODEL", "gpt-4o-mini"))
    parser.add_argument("--delay", type=float, default=0.3, help="stub delay per call in (b), seconds")
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="most texts per judge prompt (default: the token budget decides)")
    args = parser.parse_args()
    both = not args.puzzles and not args.workload
    if args.puzzles or both:
        puzzle_harness(args)
    if args.workload or both:
        if both:
            print()
        cost(args)


if __name__ == "__main__":
    main()
