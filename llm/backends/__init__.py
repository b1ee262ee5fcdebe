"""LLM backends by name (LLM_BACKEND): one file each, behind the interfaces of `llm.backend`.

A backend class has a `name`, a `capabilities` set (see `capabilities.py`), the calls its
capabilities promise (`chat`, `complete`, `embed`), and `from_settings(settings)`.
Adding one is its own file here and one line of `BACKENDS`.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> (module under llm.backends, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "OpenAIBackend"),
}

BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def build_backend(name: str, settings: Any) -> Any:
    try:
        module, cls = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown LLM backend {name!r}; one of {', '.join(BACKEND_NAMES)}") from None
    return getattr(import_module(f"llm.backends.{module}"), cls).from_settings(settings)
