"""Shared by every layer: activation records, names, deadlines and the parallel helper."""

__version__ = "0.2.0"
