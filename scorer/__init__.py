"""Scoring explanations: simulate activations from an explanation, compare with the truth."""
