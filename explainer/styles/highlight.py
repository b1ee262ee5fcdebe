"""Lee et al.'s Highlight layout: the excerpts as text, high tokens in square brackets."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import PromptStyle, excerpt_lines, highlighted_text

LAYOUT = (
    "Each excerpt is written as plain text, with every highly activating token wrapped "
    "in square brackets, [like] [this]."
)


class HighlightStyle(PromptStyle):
    name = "highlight"
    layout = LAYOUT

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        return excerpt_lines([highlighted_text(r, threshold) for r in records])
