"""Lee et al.'s Summary layout: the excerpts as plain text, then the high tokens; no numbers."""
from __future__ import annotations

from typing import Sequence

from explainer.records import NormalizedRecord
from explainer.styles.base import HIGH_LIST_LABEL, PromptStyle, excerpt_lines, high_tokens, plain_text


class SummaryStyle(PromptStyle):
    name = "summary"
    layout = (
        "Each excerpt is written as plain text; after the excerpts, a line "
        f'"{HIGH_LIST_LABEL}" lists the highly activating tokens, strongest first, '
        "separated by commas."
    )

    def render(self, records: Sequence[NormalizedRecord], threshold: int) -> str:
        listed = ", ".join(token for token, _ in high_tokens(records, threshold))
        return f"{excerpt_lines([plain_text(r) for r in records])}\n\n{HIGH_LIST_LABEL} {listed}"
