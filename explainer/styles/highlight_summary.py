"""Lee et al.'s Highlight-Summary (HS) layout: the highlighted excerpts, then the high tokens."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import HIGH_LIST_LABEL, PromptStyle, highlights_then_list
from explainer.styles.highlight import LAYOUT as HIGHLIGHT_LAYOUT


class HighlightSummaryStyle(PromptStyle):
    name = "highlight_summary"
    layout = (
        f'{HIGHLIGHT_LAYOUT} After the excerpts, a line "{HIGH_LIST_LABEL}" lists those '
        "tokens, strongest first, separated by commas."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        return highlights_then_list(records, threshold, lambda token, _: token)
