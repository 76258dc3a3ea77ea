"""The OpenAI-protocol servers the client can talk to, and how each names models."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import httpx
import openai

OPENROUTER = "openrouter"
OPENAI = "openai"
COMPATIBLE = "compatible"
LOCAL = "local"

#: Tried in this order: the first configured is the primary, the others are fallbacks.
PROVIDER_ORDER = (OPENROUTER, OPENAI, COMPATIBLE)


def key_fingerprint(api_key: str | None) -> str:
    """A short, stable, non-reversible id of a key: enough to tell keys apart in the log."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(eq=False)
class Provider:
    """One OpenAI-protocol endpoint, with its own reused (thread-safe) SDK client."""

    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    connect_timeout: float = 10.0
    default_headers: dict[str, str] = field(default_factory=dict)
    _client: openai.OpenAI | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.api_key)

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = openai.OpenAI(
                        base_url=self.base_url,
                        # Local servers (Ollama, vLLM) accept any key; the SDK insists on one.
                        api_key=self.api_key or "not-needed",
                        timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                        # Retries are ours: bounded, with backoff, across providers.
                        max_retries=0,
                        default_headers=self.default_headers or None,
                    )
        return self._client

    def model_name(self, model: str) -> str:
        """``model`` as this provider spells it."""
        if self.name == OPENAI:
            return model.removeprefix("openai/")
        if self.name == OPENROUTER and "/" not in model:
            # Bare OpenAI names ("gpt-4o-mini") are "openai/gpt-4o-mini" on OpenRouter.
            return f"openai/{model}"
        return model

    def serves(self, model: str) -> bool:
        """Whether a request for ``model`` can be sent here (used to pick fallbacks)."""
        if self.name == OPENAI:
            return "/" not in model or model.startswith("openai/")
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, {self.base_url!r})"
