"""Lee et al.'s avhs layout: highlighted excerpts, then the high tokens with their 0-10 values."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import HIGH_LIST_LABEL, PromptStyle, excerpt_lines, high_tokens, highlighted_text
from explainer.styles.highlight import LAYOUT as HIGHLIGHT_LAYOUT


class AvhsStyle(PromptStyle):
    name = "avhs"
    layout = (
        f'{HIGHLIGHT_LAYOUT} After the excerpts, a line "{HIGH_LIST_LABEL}" lists those '
        "tokens, strongest first, each with its activation in parentheses."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        listed = ", ".join(f"{token} ({value})" for token, value in high_tokens(records, threshold))
        return (
            f"{excerpt_lines([highlighted_text(r, threshold) for r in records])}\n\n"
            f"{HIGH_LIST_LABEL} {listed}"
        )
