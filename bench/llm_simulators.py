"""Cost, speed and quality of the LLM simulation formats.

    python -m bench.llm_simulators                      # cost and speed, against the loopback stub
    python -m bench.llm_simulators --delay 0.3 --concurrency 8
    python -m bench.llm_simulators --puzzles            # puzzle harness against the stub (+ offline)
    python -m bench.llm_simulators --puzzles --base-url http://localhost:8000/v1 --model M [--api-key K]

(a) Cost and speed: the standard Neuronpedia workload (20 texts x 64 tokens of
    real GPT-2 activation texts) scored once per format against the stub, which
    answers every simulation prompt in its format after a fixed delay (a keyword
    oracle stands in for the model). Per score: LLM calls, prompt and completion
    tokens (the stub reports tiktoken cl100k counts as `usage`), their ratio to
    `json`, wall time; then the same score again through a SQLite cache.
(b) Puzzles: for each of the 19 puzzles and each format, does the true
    explanation's pooled correlation beat every false one's (None counts as
    -inf)? Against the stub this measures the plumbing, not a model: run it
    with --base-url/--model/--api-key (or OPENAI_API_KEY / OPENAI_BASE_URL) to
    see the figure for a real model.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.workload import puzzle_records, puzzles, standard_request, true_beats_false
from llm.backends.openai import OpenAIBackend
from llm.cache import NullCache, SQLiteCache
from llm.errors import LLMError
from scorer.math import pooled_correlation
from scorer.simulators.all_at_once import AllAtOnceSimulator
from scorer.simulators.batched import BatchedSimulator
from scorer.simulators.json_per_text import JsonPerTextSimulator
from scorer.simulators.logprob_ev import LogprobEVSimulator
from tests.stub_openai import StubOpenAI

ROOT = Path(__file__).resolve().parent.parent

FORMATS = {
    "json": JsonPerTextSimulator,
    "batched": BatchedSimulator,
    "logprob": LogprobEVSimulator,
    "all_at_once": AllAtOnceSimulator,
}
# Feature 0 of the workload fires on military units ( Brigade, battalion, Regiment...).
WORKLOAD_EXPLANATION = "military units such as brigades, battalions and regiments"


def build(fmt: str, backend, model: str, cache, concurrency: int, batch_size: int):
    cls = FORMATS[fmt]
    if cls is BatchedSimulator:
        return cls(backend, model, cache, concurrency, batch_size=batch_size)
    return cls(backend, model, cache, concurrency)


def score_of(run, values: list[list[float]]) -> float | None:
    pairs = [(v, s.expected_activations) for v, s in zip(values, run.simulations) if s is not None]
    if not pairs:
        return None
    return pooled_correlation([p[0] for p in pairs], [p[1] for p in pairs])


def fmt_score(score: float | None) -> str:
    return "  None" if score is None else f"{score:+.3f}"


# -- (a) cost and speed ------------------------------------------------------------------------


def cost_and_speed(args: argparse.Namespace) -> None:
    request = standard_request(WORKLOAD_EXPLANATION, texts=args.texts, tokens=args.tokens)
    texts = [a["tokens"] for a in request["activations"]]
    values = [a["values"] for a in request["activations"]]
    n_tokens = sum(map(len, texts))
    print(
        f"(a) cost and speed: {len(texts)} texts x {args.tokens} tokens ({n_tokens} tokens), "
        f"stub delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}, "
        f"batch size {args.batch_size}"
    )
    print(f"    explanation: {WORKLOAD_EXPLANATION!r}")
    rows = {}
    with StubOpenAI(delay=args.delay) as stub, tempfile.TemporaryDirectory() as tmp:
        backend = OpenAIBackend(base_url=stub.base_url, max_retries=0)
        for fmt in args.formats:
            stub.reset()
            simulator = build(fmt, backend, "stub-model", NullCache(), args.concurrency, args.batch_size)
            started = time.perf_counter()
            run = simulator.simulate(request["explanation"], texts, deadline=time.monotonic() + 120)
            wall = time.perf_counter() - started

            cache = SQLiteCache(os.path.join(tmp, f"{fmt}.sqlite3"))
            cached = build(fmt, backend, "stub-model", cache, args.concurrency, args.batch_size)
            cached.simulate(request["explanation"], texts)
            stub.reset()
            started = time.perf_counter()
            again = cached.simulate(request["explanation"], texts)
            rows[fmt] = dict(
                calls=run.usage.llm_calls,
                prompt=run.usage.prompt_tokens,
                completion=run.usage.completion_tokens,
                total=run.usage.total_tokens,
                wall=wall,
                failed=len(run.failures),
                score=score_of(run, values),
                hit_calls=stub.calls(),
                hit_tokens=again.usage.total_tokens,
                hits=again.usage.cache_hits,
                hit_wall=time.perf_counter() - started,
            )
        backend.close()

    base = rows.get("json")
    header = (
        f"    {'format':<12}{'calls':>6}{'prompt':>9}{'compl.':>8}{'total':>8}"
        f"{'x fewer than json (p / c / total)':>36}{'wall ms':>9}{'failed':>7}{'score':>8}"
    )
    print(header)
    for fmt, r in rows.items():
        if base:
            ratio = (
                f"{base['prompt'] / max(r['prompt'], 1):.1f} / "
                f"{base['completion'] / max(r['completion'], 1):.1f} / "
                f"{base['total'] / max(r['total'], 1):.1f}"
            )
        else:
            ratio = "-"
        print(
            f"    {fmt:<12}{r['calls']:>6}{r['prompt']:>9}{r['completion']:>8}{r['total']:>8}"
            f"{ratio:>36}{r['wall'] * 1000:>9.0f}{r['failed']:>7}{fmt_score(r['score']):>8}"
        )
    print("    repeated score through the SQLite cache:")
    for fmt, r in rows.items():
        print(
            f"    {fmt:<12}llm calls {r['hit_calls']}, tokens {r['hit_tokens']}, "
            f"cache hits {r['hits']}, wall {r['hit_wall'] * 1000:.1f} ms"
        )


# -- (b) puzzles ---------------------------------------------------------------------------------


def puzzle_harness(args: argparse.Namespace) -> None:
    api_key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY", "")
    base_url = args.base_url if args.base_url is not None else os.environ.get("OPENAI_BASE_URL", "")
    stub = None
    if api_key or base_url:
        backend = OpenAIBackend(api_key=api_key, base_url=base_url, read_timeout=120, max_retries=2)
        where = f"{backend.host}, model {args.model}"
    else:
        stub = StubOpenAI().start()
        backend = OpenAIBackend(base_url=stub.base_url, max_retries=0)
        where = "the loopback stub (keyword oracle, not a model)"
    simulators = {
        fmt: build(fmt, backend, args.model, NullCache(), args.concurrency, args.batch_size)
        for fmt in args.formats
    }
    if stub is not None and not args.no_offline:
        offline = _offline_simulator()
        if offline is not None:
            simulators["offline"] = offline
    print(f"(b) puzzles against {where}")
    all_puzzles = puzzles()
    wins = {name: 0 for name in simulators}
    unusable = {name: 0 for name in simulators}
    tokens = {name: 0 for name in simulators}
    print(f"    {'puzzle':<12}" + "".join(f"{name:>13}" for name in simulators))
    try:
        for name, puzzle in all_puzzles.items():
            records = puzzle_records(puzzle)
            texts = [r["tokens"] for r in records]
            truth = [r["values"] for r in records]
            cells = []
            for sim_name, simulator in simulators.items():
                try:
                    scores = []
                    for explanation in [puzzle["explanation"], *puzzle["false_explanations"]]:
                        run = simulator.simulate(explanation, texts, deadline=time.monotonic() + 300)
                        tokens[sim_name] += run.usage.total_tokens
                        scores.append(score_of(run, truth))
                except LLMError as exc:
                    unusable[sim_name] += 1
                    cells.append("error")
                    print(f"    ! {sim_name} on {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                won, _ = true_beats_false(scores)
                wins[sim_name] += won
                cells.append(("pass " if won else "fail ") + fmt_score(scores[0]).strip())
            print(f"    {name:<12}" + "".join(f"{c:>13}" for c in cells))
    finally:
        backend.close()
        if stub is not None:
            stub.stop()
    total = len(all_puzzles)
    print(f"    {'passed':<12}" + "".join(f"{f'{wins[n]}/{total}':>13}" for n in simulators))
    print(f"    {'errors':<12}" + "".join(f"{unusable[n]:>13}" for n in simulators))
    print(f"    {'LLM tokens':<12}" + "".join(f"{tokens[n]:>13}" for n in simulators))


def _offline_simulator():
    try:
        from scorer.simulators.offline import OfflineSimulator
    except ImportError:
        return None
    embedder = None
    try:
        from llm.embeddings import LocalEmbedder, embeddings_available

        if embeddings_available():
            embedder = LocalEmbedder()
    except Exception:  # the offline default still runs lexically
        embedder = None
    return OfflineSimulator(embedder=embedder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", action="store_true", help="run the puzzle harness")
    parser.add_argument("--base-url", help="an OpenAI-compatible server (puzzles); default OPENAI_BASE_URL")
    parser.add_argument("--api-key", help="its key (puzzles); default OPENAI_API_KEY")
    parser.add_argument("--model", default=os.environ.get("SIMULATOR_MODEL", "gpt-4o-mini"))
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats")
    parser.add_argument("--no-offline", action="store_true", help="leave the offline simulator out")
    parser.add_argument("--delay", type=float, default=0.3, help="stub delay per call, seconds")
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in args.formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; one of {', '.join(FORMATS)}")
    if args.puzzles:
        puzzle_harness(args)
    else:
        cost_and_speed(args)


if __name__ == "__main__":
    main()
