"""The OpenAI-protocol servers the client can talk to: a registry of data, and one SDK client each.

Every provider is a ``ProviderSpec``: where it lives, how it spells model names, which extra
request fields it wants, whether its calls cost anything. Adding an OpenAI-compatible provider
(Groq, Together, a vLLM of your own) is one ``register_provider(ProviderSpec(...))`` and an
entry in ``settings.LLM["PROVIDERS"]``; nothing else in the client changes::

    register_provider(ProviderSpec("groq", default_base_url="https://api.groq.com/openai/v1"))
    LLM = {"PROVIDERS": {"groq": {"API_KEY": "..."}}}
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import httpx
import openai

OPENROUTER = "openrouter"
OPENAI = "openai"
COMPATIBLE = "compatible"
#: The in-process embedding models (``local/...``): never an HTTP provider.
LOCAL = "local"


@dataclass(frozen=True)
class ProviderSpec:
    """What the client must know of one kind of OpenAI-protocol server."""

    name: str
    #: None: the server has no public address, so it is used only when a base URL is configured.
    default_base_url: str | None = None
    #: Whether the provider is used without an API key (local servers accept any key).
    needs_key: bool = True
    #: Requests for "<prefix>x" are sent as "x"; other "vendor/model" names are not served here.
    own_prefix: str = ""
    #: A bare name "x" is sent as "<prefix>x" (OpenRouter names OpenAI's models "openai/x").
    bare_prefix: str = ""
    default_headers: Mapping[str, str] = field(default_factory=dict)
    #: Extra JSON fields of every chat and embedding request.
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    #: Calls cost nothing (no price lookup, no warning about an unknown price).
    free: bool = False

    def model_name(self, model: str) -> str:
        """``model`` as this provider spells it."""
        if self.own_prefix:
            return model.removeprefix(self.own_prefix)
        if self.bare_prefix and "/" not in model:
            return f"{self.bare_prefix}{model}"
        return model

    def serves(self, model: str) -> bool:
        """Whether a request for ``model`` can be sent here (used to pick fallbacks)."""
        return not self.own_prefix or "/" not in model or model.startswith(self.own_prefix)


_REGISTRY: dict[str, ProviderSpec] = {}
# Kept beside the registry: the price lookup asks on every call.
_FREE: frozenset[str] = frozenset({LOCAL})
_registry_lock = threading.Lock()


def register_provider(spec: ProviderSpec) -> ProviderSpec:
    """Add (or replace) a provider. Registration order is fallback order: earlier ones are primary."""
    with _registry_lock:
        _REGISTRY[spec.name] = spec
        _update_free()
    return spec


def unregister_provider(name: str) -> None:
    with _registry_lock:
        _REGISTRY.pop(name, None)
        _update_free()


def _update_free() -> None:
    global _FREE
    _FREE = frozenset(name for name, spec in _REGISTRY.items() if spec.free) | {LOCAL}


def provider_specs() -> Mapping[str, ProviderSpec]:
    """The registered providers, in fallback order (a read-only view)."""
    return MappingProxyType(_REGISTRY)


def free_providers() -> frozenset[str]:
    """The providers whose calls cost nothing (``local`` and the specs registered ``free``)."""
    return _FREE


register_provider(
    ProviderSpec(
        OPENROUTER,
        default_base_url="https://openrouter.ai/api/v1",
        bare_prefix="openai/",
        # OpenRouter's app attribution header; and it reports what it charged (usage.cost) when asked.
        default_headers={"X-Title": "LLM Platform"},
        extra_body={"usage": {"include": True}},
    )
)
register_provider(ProviderSpec(OPENAI, default_base_url="https://api.openai.com/v1", own_prefix="openai/"))
register_provider(ProviderSpec(COMPATIBLE, needs_key=False))


def key_fingerprint(api_key: str | None) -> str:
    """A short, stable, non-reversible id of a key: enough to tell keys apart in the log."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(eq=False)
class Provider:
    """One configured endpoint of a ``ProviderSpec``, with its own reused (thread-safe) SDK client."""

    spec: ProviderSpec
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    connect_timeout: float = 10.0
    _client: openai.OpenAI | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
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
                        default_headers=dict(self.spec.default_headers) or None,
                    )
        return self._client

    def model_name(self, model: str) -> str:
        return self.spec.model_name(model)

    def serves(self, model: str) -> bool:
        return self.spec.serves(model)

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments the SDK call needs for this provider's extra fields."""
        return {"extra_body": dict(self.spec.extra_body)} if self.spec.extra_body else {}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, {self.base_url!r})"


def configured_providers(settings: Mapping[str, Any], *, timeout: float = 60.0) -> dict[str, Provider]:
    """The registered providers that ``settings`` (name -> ``ProviderSettings``) makes usable, in order.

    A provider is usable with a key, or, when it needs none, with a base URL.
    """
    providers = {}
    for name, spec in provider_specs().items():
        configured = settings.get(name)
        if configured is None:
            continue
        base_url = configured.base_url or spec.default_base_url
        if base_url is None or (spec.needs_key and not configured.api_key):
            continue
        providers[name] = Provider(spec, base_url, configured.api_key, timeout)
    return providers
