"""Input tokens per explanation prompt, per style, beside Lee et al.'s figures; and how close
the offline explainer comes to the puzzles' ground truth.

    python -m bench.explain_tokens

Counts are `llm.tokens.count_message_tokens` (tiktoken cl100k, chat framing included) of
the exact messages `explain(..., dry_run=True)` builds: the 5 top distinct texts and the
3 few-shot example neurons. The paper's numbers are on its own 5 test neurons with 64-token
texts and its own few-shot examples, so only the ratios between styles compare directly.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from statistics import mean

from explainer.errors import NothingToExplain
from explainer.explain import explain
from explainer.records import ActivationRecord, trim_to_window
from explainer.styles import STYLES

ROOT = Path(__file__).resolve().parent.parent

SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))

# Lee et al. 2023: mean input tokens over their 5 test neurons, few-shot examples included.
PAPER = {
    "original": 2376.6,
    "summary": 963.2,
    "highlight": 885.0,
    "highlight_summary": 1022.4,
    "avhs": 1269.6,
}
ORDER = list(STYLES)  # original, summary, highlight, highlight_summary, avhs

STOPWORDS = set(
    "a an and are as at be but by for from if in into is it its of on or that the their them "
    "they this to was were when which while with without words word phrases phrase tokens token "
    "nothing else only not such".split()
)


def latents() -> list[tuple[str, list[ActivationRecord]]]:
    out = []
    for name in ("batch-0.json", "batch-1.json"):
        data = json.loads((SHARED_DATA / "neuronpedia-gpt2-small-res-jb" / name).read_text())
        for feature in data["features"]:
            records = [ActivationRecord(list(a["tokens"]), list(a["values"])) for a in feature["activations"]]
            out.append((f"latent {feature['feature_index']}", records))
    return out


def puzzles() -> list[tuple[str, str, list[ActivationRecord]]]:
    data = json.loads((SHARED_DATA / "puzzles" / "puzzles.json").read_text())
    out = []
    for name, puzzle in data.items():
        records = []
        for sentence in puzzle["sentences"]:
            tokens = [item if isinstance(item, str) else item[0] for item in sentence]
            values = [0.0 if isinstance(item, str) else float(item[1]) for item in sentence]
            records.append(ActivationRecord(tokens, values))
        out.append((name, puzzle["explanation"], records))
    return out


def prompt_tokens(records, style, **options) -> int | None:
    try:
        return explain(records, style=style, dry_run=True, **options).prompt_tokens
    except NothingToExplain:
        return None


def content_words(text: str) -> set[str]:
    """Words that carry meaning: lower-cased, crude singular, stopwords out; a quoted literal
    ("of", "<") always counts, since naming the exact token is the point there."""
    quoted = {q.strip().lower() for q in re.findall(r'["\u201c]([^"\u201d]+)["\u201d]', text)}
    words = set(re.findall(r"[a-z0-9]+", re.sub(r'["\u201c][^"\u201d]+["\u201d]', " ", text.lower())))
    words = {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in STOPWORDS}
    return words | {q for q in quoted if q}


def token_table(live, puzzle_set) -> None:
    columns = {
        "latents, 127-token texts": [recs for _, recs in live],
        "latents, 64-token windows": [[trim_to_window(r, 64) for r in recs] for _, recs in live],
        "puzzles": [recs for _, _, recs in puzzle_set],
    }
    table = {
        style: {col: mean(prompt_tokens(recs, style) for recs in sets) for col, sets in columns.items()}
        for style in ORDER
    }
    # The whole prompt for a one-token target: the fixed cost of the system message and examples.
    fixed = {style: prompt_tokens([ActivationRecord(["x"], [1.0])], style) for style in ORDER}

    print(
        f"Input tokens per explanation prompt (mean; live latents: {', '.join(n for n, _ in live)}; "
        f"{len(puzzle_set)} puzzles; 5 top texts + 3 few-shot neurons)\n"
    )
    header = ["style", "paper"] + list(columns) + ["fixed part"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for style in ORDER:
        cells = [f"{table[style][c]:.1f}" for c in columns]
        print(" | ".join([style, f"{PAPER[style]:.1f}", *cells, str(fixed[style])]))
    ratios = [f"{table['original'][c] / table['summary'][c]:.2f}x" for c in columns]
    paper_ratio = f"{PAPER['original'] / PAPER['summary']:.2f}x"
    fixed_ratio = f"{fixed['original'] / fixed['summary']:.2f}x"
    print(" | ".join(["original/summary", paper_ratio, *ratios, fixed_ratio]))
    print("\n(fixed part: the prompt for a one-token target, i.e. system message + 3 few-shot neurons)")


def offline_table(puzzle_set) -> None:
    print(
        "\nOffline explainer on the puzzles (5 top sentences; closeness = share of the ground "
        "truth's content words, and quoted literals, found in the explanation)\n"
    )
    print("puzzle | offline explanation | ground truth | closeness")
    print("--- | --- | --- | ---")
    scores = []
    for name, truth, records in puzzle_set:
        guess = explain(records).explanation
        want = content_words(truth)
        score = len(want & content_words(guess)) / len(want) if want else 0.0
        scores.append(score)
        print(f"{name} | {guess} | {truth} | {score:.2f}")
    overlapping = sum(s > 0 for s in scores)
    print(f"\nmean closeness {mean(scores):.3f}; puzzles with any overlap: {overlapping}/{len(scores)}")


def main() -> None:
    live, dead = [], []
    for name, records in latents():
        (live if prompt_tokens(records, "summary") is not None else dead).append((name, records))
    puzzle_set = puzzles()
    token_table(live, puzzle_set)
    for name, _ in dead:
        print(f"{name}: every activation is 0 -> explain() raises NothingToExplain (400); not in the means")
    offline_table(puzzle_set)


if __name__ == "__main__":
    main()
