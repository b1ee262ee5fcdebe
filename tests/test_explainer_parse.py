"""Cleaning the explainer model's answer."""
from __future__ import annotations

import pytest

from explainer.parse import clean_explanation


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("words related to colors", "words related to colors"),
        ("  words related to colors.  ", "words related to colors"),
        ("the main thing this neuron does is find words related to colors.", "words related to colors"),
        ("The Main Thing This Neuron Does Is Find: colors", "colors"),
        ("Explanation of neuron 4: the main thing this neuron does is find colors", "colors"),
        ("Explanation of neuron 4 behavior: colors", "colors"),
        ("This neuron detects colors", "colors"),
        ('"words related to colors."', "words related to colors"),
        ('"words related to colors".', "words related to colors"),
        ("\u201ccolors\u201d", "colors"),
        ("'colors'", "colors"),
        ("**colors**", "colors"),
        ('the main thing this neuron does is find "colors"', "colors"),
        ("words related\nto colors", "words related to colors"),
        ("colors\n\nNeuron 5\nActivations:", "colors"),
        ('the tokens "fox" and "leopard"', 'the tokens "fox" and "leopard"'),
        ('"fox" and "leopard"', '"fox" and "leopard"'),
        ("the word after \"of\"", "the word after \"of\""),
        ("abbreviations such as etc...", "abbreviations such as etc..."),
        ("unknown words", "unknown words"),
    ],
)
def test_cleaning(raw, clean):
    assert clean_explanation(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "\n\n", ".", '""', "...", "the main thing this neuron does is find",
     "the main thing this neuron does is find.", "Unknown", "N/A", "I'm sorry, but I can't help with that.",
     "I cannot determine a pattern", "As an AI, I"],
)
def test_unusable_answers_are_none(raw):
    assert clean_explanation(raw) is None


def test_custom_prefix():
    assert clean_explanation("this latent fires on dates", prefix="this latent fires on") == "dates"
    # The standard echo is removed whatever prefix the prompt used.
    assert clean_explanation("the main thing this neuron does is find dates", prefix="") == "dates"
