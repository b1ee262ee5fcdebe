"""Names shared by every layer: the offline default and the OpenAI-compatible backend."""
from __future__ import annotations

OFFLINE = "offline"  # the embedded models: no key, no network
OPENAI = "openai"  # any OpenAI-compatible server
