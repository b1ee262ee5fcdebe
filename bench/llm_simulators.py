"""Cost, speed and quality of the LLM simulation formats, side by side.

    python -m bench.llm_simulators                      # cost and speed, against the loopback stub
    python -m bench.llm_simulators --sizes 20x64,200x64 --delay 0.3 --concurrency 8
    python -m bench.llm_simulators --puzzles            # puzzle harness against the stub (+ offline)
    python -m bench.llm_simulators --puzzles --base-url http://localhost:8000/v1 --model M [--api-key K]
        [--prices M=in/out/cached]                      # every format on your backend, one command

(a) Cost and speed: Neuronpedia-shaped workloads (by default the standard 20
    texts x 64 tokens and 200 x 64, real GPT-2 activation texts) scored once per
    format against the stub, which answers every simulation prompt in its format
    after a fixed delay (a keyword oracle stands in for the model). Per score:
    LLM calls, input and output tokens (the stub reports tiktoken cl100k counts
    as `usage`), their ratio to `json`, wall time, the cost at --prices; then a
    second explanation on the same texts, with the stub playing a provider's
    prefix cache (OpenAI's rule: whole 128-token blocks from 1,024 on), to show
    what the prompt layout lets a provider cache; then the first score again
    through a SQLite cache.
(b) Puzzles: for each of the 19 puzzles and each format, does the true
    explanation's pooled correlation beat every false one's (None counts as
    -inf)? Per format: puzzles won, texts that failed, tokens and cost. Against
    the stub this measures the plumbing, not a model: run it with
    --base-url/--model/--api-key (or OPENAI_API_KEY / OPENAI_BASE_URL) and
    --prices (or MODEL_PRICES) to see the figures for a real model.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.workload import pooled_request, puzzle_records, puzzles, standard_request, true_beats_false
from llm.backends.openai import OpenAIBackend
from llm.cache import NullCache, SQLiteCache
from llm.errors import LLMError
from llm.pricing import parse_prices
from llm.usage import Usage
from scorer.math import pooled_correlation
from scorer.simulators.all_at_once import AllAtOnceSimulator
from scorer.simulators.batched import BatchedSimulator
from scorer.simulators.compact import CompactSimulator
from scorer.simulators.json_per_text import JsonPerTextSimulator
from scorer.simulators.logprob_ev import LogprobEVSimulator
from tests.stub_openai import PrefixCache, StubOpenAI

ROOT = Path(__file__).resolve().parent.parent

FORMATS = {
    "json": JsonPerTextSimulator,
    "batched": BatchedSimulator,
    "compact": CompactSimulator,
    "logprob": LogprobEVSimulator,
    "all_at_once": AllAtOnceSimulator,
}
# Feature 0 of the workload fires on military units ( Brigade, battalion, Regiment...).
WORKLOAD_EXPLANATION = "military units such as brigades, battalions and regiments"
SECOND_EXPLANATION = "words about armies and soldiers"


def build(fmt: str, backend, model: str, cache, args: argparse.Namespace):
    cls = FORMATS[fmt]
    if cls is BatchedSimulator:
        return cls(backend, model, cache, args.concurrency, batch_size=args.batch_size, max_batch_tokens=args.batch_tokens)
    if cls is CompactSimulator:
        return cls(backend, model, cache, args.concurrency, batch_tokens=args.batch_tokens)
    return cls(backend, model, cache, args.concurrency)


def score_of(run, values: list[list[float]]) -> float | None:
    pairs = [(v, s.expected_activations) for v, s in zip(values, run.simulations) if s is not None]
    if not pairs:
        return None
    return pooled_correlation([p[0] for p in pairs], [p[1] for p in pairs])


def fmt_score(score: float | None) -> str:
    return "  None" if score is None else f"{score:+.3f}"


def fmt_cost(usage: Usage) -> str:
    return "-" if usage.cost_usd is None else f"${usage.cost_usd:.5f}"


# -- (a) cost and speed ------------------------------------------------------------------------


def cost_and_speed(args: argparse.Namespace) -> None:
    prices = parse_prices(args.prices)
    print(
        f"(a) cost and speed against the stub: delay {args.delay * 1000:.0f} ms, concurrency "
        f"{args.concurrency}, batched {args.batch_size} texts a call, compact "
        f"{args.batch_tokens} text tokens a call, model {args.model!r}, prices {args.prices or 'none'}"
    )
    print(f"    explanation: {WORKLOAD_EXPLANATION!r}; second: {SECOND_EXPLANATION!r}")
    for number, (n_texts, n_tokens) in enumerate(args.sizes):
        request = standard_request(WORKLOAD_EXPLANATION, texts=n_texts, tokens=n_tokens)
        where = "the standard workload: latent 0's top texts"
        if len(request["activations"]) < n_texts:
            request = pooled_request(WORKLOAD_EXPLANATION, texts=n_texts, tokens=n_tokens)
            where = "every latent's texts, repeated to fill; the score means nothing here"
        texts = [a["tokens"] for a in request["activations"]]
        values = [a["values"] for a in request["activations"]]
        print(f"\n    {len(texts)} texts x {n_tokens} tokens ({sum(map(len, texts))} tokens; {where})")
        rows = {}
        with StubOpenAI(delay=args.delay, prefix_cache=PrefixCache()) as stub, tempfile.TemporaryDirectory() as tmp:
            backend = OpenAIBackend(base_url=stub.base_url, max_retries=0, prices=prices)
            for fmt in args.formats:
                stub.reset()
                simulator = build(fmt, backend, args.model, NullCache(), args)
                started = time.perf_counter()
                run = simulator.simulate(request["explanation"], texts, deadline=time.monotonic() + 600)
                wall = time.perf_counter() - started
                second = simulator.simulate(SECOND_EXPLANATION, texts, deadline=time.monotonic() + 600)
                row = dict(run=run.usage, second=second.usage, wall=wall, failed=len(run.failures),
                           score=score_of(run, values))
                if number == 0:
                    cache = SQLiteCache(os.path.join(tmp, f"{fmt}.sqlite3"))
                    cached = build(fmt, backend, args.model, cache, args)
                    cached.simulate(request["explanation"], texts)
                    stub.reset()
                    started = time.perf_counter()
                    again = cached.simulate(request["explanation"], texts)
                    row.update(hit_calls=stub.calls(), hit_tokens=again.usage.total_tokens,
                               hits=again.usage.cache_hits, hit_wall=time.perf_counter() - started)
                rows[fmt] = row
            backend.close()
        _print_cost_table(rows)
        if number == 0:
            print("    the first score again, through the SQLite cache:")
            for fmt, r in rows.items():
                print(
                    f"    {fmt:<12}llm calls {r['hit_calls']}, tokens {r['hit_tokens']}, "
                    f"cache hits {r['hits']}, wall {r['hit_wall'] * 1000:.1f} ms"
                )


def _print_cost_table(rows: dict) -> None:
    base = rows.get("json")
    print(
        f"    {'format':<12}{'calls':>6}{'input':>9}{'output':>8}{'total':>9}{'x fewer than json':>19}"
        f"{'wall ms':>9}{'failed':>7}{'score':>8}{'cost':>11}"
        f"{'2nd: input':>12}{'cached':>8}{'cost':>11}"
    )
    for fmt, r in rows.items():
        u, v = r["run"], r["second"]
        ratio = f"{base['run'].total_tokens / max(u.total_tokens, 1):.1f}" if base else "-"
        print(
            f"    {fmt:<12}{u.llm_calls:>6}{u.prompt_tokens:>9}{u.completion_tokens:>8}{u.total_tokens:>9}"
            f"{ratio:>19}{r['wall'] * 1000:>9.0f}{r['failed']:>7}{fmt_score(r['score']):>8}{fmt_cost(u):>11}"
            f"{v.prompt_tokens:>12}{v.cached_prompt_tokens:>8}{fmt_cost(v):>11}"
        )


# -- (b) puzzles ---------------------------------------------------------------------------------


def puzzle_harness(args: argparse.Namespace) -> None:
    api_key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY", "")
    base_url = args.base_url if args.base_url is not None else os.environ.get("OPENAI_BASE_URL", "")
    stub = None
    prices = parse_prices(args.prices)
    if api_key or base_url:
        backend = OpenAIBackend(api_key=api_key, base_url=base_url, read_timeout=120, max_retries=2, prices=prices)
        where = f"{backend.host}, model {args.model}"
    else:
        stub = StubOpenAI(prefix_cache=PrefixCache()).start()
        backend = OpenAIBackend(base_url=stub.base_url, max_retries=0, prices=prices)
        where = "the loopback stub (keyword oracle, not a model)"
    simulators = {fmt: build(fmt, backend, args.model, NullCache(), args) for fmt in args.formats}
    if stub is not None and not args.no_offline:
        offline = _offline_simulator()
        if offline is not None:
            simulators["offline"] = offline
    print(f"(b) puzzles against {where}")
    all_puzzles = puzzles()
    wins = {name: 0 for name in simulators}
    unusable = {name: 0 for name in simulators}
    failed = {name: 0 for name in simulators}
    usage = {name: Usage() for name in simulators}
    elapsed = {name: 0.0 for name in simulators}
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
                        started = time.perf_counter()
                        run = simulator.simulate(explanation, texts, deadline=time.monotonic() + 300)
                        elapsed[sim_name] += time.perf_counter() - started
                        usage[sim_name] = usage[sim_name] + run.usage
                        failed[sim_name] += len(run.failures)
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
    print()
    print(
        f"    {'format':<12}{'won':>7}{'errors':>8}{'texts failed':>14}{'calls':>7}{'input':>10}"
        f"{'cached':>9}{'output':>9}{'total':>10}{'cost':>11}{'seconds':>9}"
    )
    for n in simulators:
        u = usage[n]
        print(
            f"    {n:<12}{f'{wins[n]}/{total}':>7}{unusable[n]:>8}{failed[n]:>14}{u.llm_calls:>7}"
            f"{u.prompt_tokens:>10}{u.cached_prompt_tokens:>9}{u.completion_tokens:>9}{u.total_tokens:>10}"
            f"{fmt_cost(u):>11}{elapsed[n]:>9.1f}"
        )
    print(
        "    Keep the default (batched) unless compact wins at least as many puzzles with no more "
        "failed texts; then SIMULATOR=compact scores for less."
    )


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
    parser.add_argument("--sizes", default="20x64,200x64", help="workloads for (a): TEXTSxTOKENS,...")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=10, help="batched: texts a call")
    parser.add_argument("--batch-tokens", type=int, default=2048, help="SIMULATOR_BATCH_TOKENS: text tokens a call")
    parser.add_argument("--prices", default=os.environ.get("MODEL_PRICES", ""),
                        help="MODEL_PRICES notation, e.g. gpt-4o-mini=0.15/0.60/0.075; default MODEL_PRICES")
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        args.sizes = [tuple(int(x) for x in size.lower().split("x")) for size in args.sizes.split(",") if size.strip()]
        parse_prices(args.prices)
        if any(len(size) != 2 for size in args.sizes):
            raise ValueError("--sizes: TEXTSxTOKENS,...")
    except ValueError as exc:
        parser.error(str(exc) or "--sizes: TEXTSxTOKENS,...")
    unknown = [f for f in args.formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; one of {', '.join(FORMATS)}")
    if args.puzzles:
        puzzle_harness(args)
    else:
        cost_and_speed(args)


if __name__ == "__main__":
    main()
