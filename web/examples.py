"""The viewer's packaged examples (web/data/examples.json, see web/data/NOTICE.md).

Read once, on first use; nothing here imports Flask.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "examples.json"


@lru_cache(maxsize=1)
def _examples() -> dict[str, dict]:
    examples = json.loads(DATA.read_text(encoding="utf-8"))["examples"]
    return {example["id"]: example for example in examples}


def listing() -> list[dict]:
    """Every example's id, title and number of texts, in the file's order."""
    return [
        {"id": e["id"], "title": e["title"], "texts": len(e["activations"]), "source": e["source"]}
        for e in _examples().values()
    ]


def body(example_id: str) -> dict | None:
    """A body ready for POST /score (add an explanation), with the example's suggested
    explanations when it has some; None for an unknown id."""
    example = _examples().get(example_id)
    if example is None:
        return None
    out = {"id": example["id"], "title": example["title"], "activations": example["activations"]}
    for key in ("suggestion", "false_explanations"):
        if key in example:
            out[key] = example[key]
    return out
