"""Settings and the composition root: configuration in, built objects out."""
from __future__ import annotations

from runtime.root import Runtime
from runtime.settings import ConfigError, Settings

__all__ = ["ConfigError", "Runtime", "Settings"]
