"""Lee et al.'s Highlight-Summary (HS) layout: the highlighted excerpts, then the high tokens."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import HIGH_LIST_LABEL, PromptStyle, excerpt_lines, high_tokens, highlighted_text
from explainer.styles.highlight import LAYOUT as HIGHLIGHT_LAYOUT


class HighlightSummaryStyle(PromptStyle):
    name = "highlight_summary"
    layout = (
        f'{HIGHLIGHT_LAYOUT} After the excerpts, a line "{HIGH_LIST_LABEL}" lists those '
        "tokens, strongest first, separated by commas."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        listed = ", ".join(token for token, _ in high_tokens(records, threshold))
        return (
            f"{excerpt_lines([highlighted_text(r, threshold) for r in records])}\n\n"
            f"{HIGH_LIST_LABEL} {listed}"
        )
