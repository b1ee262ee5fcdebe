"""OpenAI's original layout: every token on its own line with its 0-10 value."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import PromptStyle, render_token

# Below this share of high tokens, the high lines are repeated on their own: in a sparse
# neuron they would otherwise be a few lines lost among hundreds of zeros.
REPEAT_BELOW = 0.2


class OriginalStyle(PromptStyle):
    name = "original"
    layout = (
        "Each excerpt is written between <start> and <end>, one token per line: the token, "
        "a tab, then its activation. When few tokens are highly activating, their lines "
        "are listed a second time on their own after the excerpts."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        blocks = [_block(r, range(len(r.tokens))) for r in records]
        total = sum(len(r.tokens) for r in records)
        high = sum(len(r.high_indices(threshold)) for r in records)
        if high and high < REPEAT_BELOW * total:
            blocks.append("Only the highly activating tokens, once more:")
            blocks.extend(_block(r, r.high_indices(threshold)) for r in records if r.high_indices(threshold))
        return "\n".join(blocks)


def _block(record: NormalizedRecord, indices) -> str:
    lines = [f"{render_token(record.tokens[i])}\t{record.values[i]}" for i in indices]
    return "\n".join(["<start>", *lines, "<end>"])
