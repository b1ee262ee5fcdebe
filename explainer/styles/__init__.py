"""The five explainer prompt styles of Lee et al. (2023), chosen by name.

Adding a style: one new file with a `PromptStyle` subclass, and one line in STYLES.
"""
from __future__ import annotations

from explainer.errors import UnknownStyle
from explainer.styles.avhs import AvhsStyle
from explainer.styles.base import PREFIX, ExplainerStyle, PromptStyle
from explainer.styles.highlight import HighlightStyle
from explainer.styles.highlight_summary import HighlightSummaryStyle
from explainer.styles.original import OriginalStyle
from explainer.styles.summary import SummaryStyle

STYLES: dict[str, ExplainerStyle] = {
    style.name: style
    for style in (OriginalStyle(), SummaryStyle(), HighlightStyle(), HighlightSummaryStyle(), AvhsStyle())
}

DEFAULT_STYLE = "summary"


def get_style(name: str) -> ExplainerStyle:
    try:
        return STYLES[name]
    except (KeyError, TypeError):
        raise UnknownStyle(
            f"unknown style {name!r}; choose one of: {', '.join(STYLES)}"
        ) from None


__all__ = ["DEFAULT_STYLE", "PREFIX", "STYLES", "ExplainerStyle", "PromptStyle", "UnknownStyle", "get_style"]
