"""What /compare costs and what it can tell apart.

    .venv/bin/python -m bench.compare [--write]

(a) Cost: 5 explanations on the standard workload (bench.workload.standard_request: 20 texts x
    64 tokens) with the `batched` and `json` simulators against the loopback stub, as one
    /compare and as five /score calls (fresh app, no cache, for each): LLM calls and tokens.
(b) Separation: for every puzzle (../shared/data/puzzles), /compare of the true explanation
    and its false ones with the offline simulator; how often the true explanation is ranked
    above a false one with the pair's Holm-adjusted p-value under 0.05 (its interval clear of
    0), and how wide the intervals are. Reported, not tuned.
`--write` replaces the section in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.workload import puzzle_records, puzzles, standard_request
from server import create_app
from tests.conftest import make_settings
from tests.stub_openai import StubOpenAI

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Comparing explanations (/compare)"
EXPLANATIONS = ["words about time", "military units", "the token brigade", "numbers", "verbs of motion"]


def cost() -> list[str]:
    texts = standard_request()["activations"]
    rows = ["| simulator | way | LLM calls | prompt tokens | completion tokens |", "|---|---|---|---|---|"]
    for simulator in ("batched", "json"):
        with StubOpenAI() as stub:
            client = create_app(make_settings(openai_base_url=stub.base_url, log_level="WARNING")).test_client()
            compared = client.post("/compare", json={"explanations": EXPLANATIONS, "activations": texts, "simulator": simulator}).get_json()
            usage = compared["usage"]
        rows.append(f"| {simulator} | one /compare of 5 | {usage['llm_calls']} | {usage['prompt_tokens']:,} | {usage['completion_tokens']:,} |")
        totals = {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for explanation in EXPLANATIONS:
            with StubOpenAI() as stub:
                client = create_app(make_settings(openai_base_url=stub.base_url, log_level="WARNING")).test_client()
                usage = client.post("/score", json={"explanation": explanation, "activations": texts, "simulator": simulator}).get_json()["usage"]
            for key in totals:
                totals[key] += usage[key]
        rows.append(f"| {simulator} | five /score | {totals['llm_calls']} | {totals['prompt_tokens']:,} | {totals['completion_tokens']:,} |")
    return rows


def separation() -> list[str]:
    client = create_app(make_settings(log_level="WARNING")).test_client()
    pairs = separated = above = 0
    widths, true_widths = [], []
    per_puzzle = []
    counts = [len(p["sentences"]) for p in puzzles().values()]
    for name, puzzle in puzzles().items():
        explanations = [puzzle["explanation"], *puzzle["false_explanations"]]
        body = client.post("/compare", json={"explanations": explanations, "activations": puzzle_records(puzzle)}).get_json()
        for result in body["results"]:
            if result["score_interval"]:
                widths.append(result["score_interval"]["high"] - result["score_interval"]["low"])
        if body["results"][0]["score_interval"]:
            true_widths.append(body["results"][0]["score_interval"]["high"] - body["results"][0]["score_interval"]["low"])
        clear = 0
        for pair in body["pairs"]:
            if pair["a"] != 0:
                continue
            pairs += 1
            if pair["difference"] is not None and pair["difference"] > 0:
                above += 1
                if pair["p_adjusted"] is not None and pair["p_adjusted"] < 0.05:
                    separated += 1
                    clear += 1
        per_puzzle.append(f"{name} {clear}/{len(puzzle['false_explanations'])}")
    return [
        f"{len(per_puzzle)} puzzles, {pairs} (true, false) pairs, offline simulator, 1,000 resamples, Holm over each puzzle's pairs:",
        "",
        "| true explanation above the false one | and separated (adjusted p < 0.05) | median interval width (all) | median width (true) |",
        "|---|---|---|---|",
        f"| {above}/{pairs} | {separated}/{pairs} | {statistics.median(widths):.3f} | {statistics.median(true_widths):.3f} |",
        "",
        "Per puzzle, false explanations separated from the true one: " + ", ".join(per_puzzle) + ".",
        "",
        f"Puzzles have {min(counts)}-{max(counts)} short texts (median {statistics.median(counts):g}), so intervals are",
        "wide and a pair is often not separable at 0.05 even where the true explanation scores higher:",
        "the honest reading is that a puzzle's few texts cannot tell those explanations apart with",
        "the offline simulator, whose own ranking is weak (the true explanation is above a false one",
        "in the first column's share of pairs).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    lines = [
        SECTION,
        "",
        "`.venv/bin/python -m bench.compare` (the stub answers instantly; tokens are what the prompts hold).",
        "",
        "Cost of 5 explanations on the standard workload (20 texts x 64 tokens):",
        "",
        *cost(),
        "",
        "A /compare sends each explanation's own prompts, so it costs what five /score calls cost,",
        "never more; what it adds is the paired bootstrap on the same texts (about 7 ms for 5).",
        "",
        *separation(),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = ROOT / "bench" / "RESULTS.md"
        current = path.read_text()
        if SECTION in current:
            start = current.index(SECTION)
            end = current.find("\n## ", start + len(SECTION))
            current = current[:start] + text + "\n" + ("" if end == -1 else current[end:])
        else:
            current = current.rstrip() + "\n\n" + text + "\n"
        path.write_text(current)


if __name__ == "__main__":
    main()
