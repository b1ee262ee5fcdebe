"""Lee et al.'s avhs layout: highlighted excerpts, then the high tokens with their 0-10 values."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import HIGH_LIST_LABEL, PromptStyle, highlights_then_list
from explainer.styles.highlight import LAYOUT as HIGHLIGHT_LAYOUT


class AvhsStyle(PromptStyle):
    name = "avhs"
    layout = (
        f'{HIGHLIGHT_LAYOUT} After the excerpts, a line "{HIGH_LIST_LABEL}" lists those '
        "tokens, strongest first, each with its activation in parentheses."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        return highlights_then_list(records, threshold, lambda token, value: f"{token} ({value})")
