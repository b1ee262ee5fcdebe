"""Scorers: explanation + records -> score, metric, per-text breakdown."""
