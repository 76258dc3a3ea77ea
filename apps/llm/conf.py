"""The LLM app's settings: the only reader of ``settings.LLM``, read when asked, never at import.

A project configures the app with one dict (every key optional)::

    LLM = {
        "PROVIDERS": {
            "openrouter": {"API_KEY": "...", "BASE_URL": "https://openrouter.ai/api/v1"},
            "openai": {"API_KEY": "..."},
            "compatible": {"BASE_URL": "http://localhost:11434/v1", "API_KEY": None},
        },
        "REQUEST_LOG": "async",          # "async", "sync" or "off"
        "STORE_TEXT": False,             # keep prompt and answer text in the request log
        "TEXT_LIMIT": 20_000,            # characters kept per text field
        "RETENTION_DAYS": 90,            # raw request-log rows are deleted after this
        "SPOOL_DIR": "var/spool/llm-requests",
        "TOKENIZER_CACHE_DIR": None,     # where tiktoken's files are seeded (None: tiktoken's default)
        "BUDGETS_WHEN_DB_DOWN": "allow", # "allow" (last known budgets, spend applied later) or "deny"
        "UNPRICED": "estimate",          # a model without a price under a hard limit: "refuse", "estimate", "allow"
        "OTEL_ENDPOINT": None,           # OTLP/HTTP base URL: every call exported as a span (None: off)
        "OTEL_SERVICE_NAME": "llm-platform",  # the spans' service.name
    }

This project's ``config/`` fills it from the environment (``config/env.py``). Outside a
configured Django (a script using the tokenizer alone) the defaults apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings

RequestLogMode = Literal["async", "sync", "off"]
WhenDatabaseDown = Literal["allow", "deny"]
UnpricedPolicy = Literal["refuse", "estimate", "allow"]


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's endpoint and key (the key never appears in a repr)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None


@dataclass(frozen=True)
class LLMSettings:
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    request_log: RequestLogMode = "async"
    store_text: bool = False
    text_limit: int = 20_000
    retention_days: int = 90
    spool_dir: Path = Path("var/spool/llm-requests")
    tokenizer_cache_dir: Path | None = None
    budgets_when_db_down: WhenDatabaseDown = "allow"
    unpriced: UnpricedPolicy = "estimate"
    #: OTLP/HTTP base URL (``http://collector:4318``) each call is exported to as an OpenTelemetry
    #: span (``apps.llm.accounting.otel``); None: no export, and opentelemetry is never imported.
    otel_endpoint: str | None = None
    otel_service_name: str = "llm-platform"

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings()


def llm_settings() -> LLMSettings:
    """``settings.LLM`` as typed values, with the defaults for what it leaves out."""
    raw: Mapping[str, Any] = getattr(settings, "LLM", {}) if settings.configured else {}
    defaults = LLMSettings()
    cache_dir = raw.get("TOKENIZER_CACHE_DIR")
    return LLMSettings(
        providers={
            name: ProviderSettings(api_key=values.get("API_KEY") or None, base_url=values.get("BASE_URL") or None)
            for name, values in (raw.get("PROVIDERS") or {}).items()
        },
        request_log=raw.get("REQUEST_LOG", defaults.request_log),
        store_text=bool(raw.get("STORE_TEXT", defaults.store_text)),
        text_limit=int(raw.get("TEXT_LIMIT", defaults.text_limit)),
        retention_days=int(raw.get("RETENTION_DAYS", defaults.retention_days)),
        spool_dir=Path(raw.get("SPOOL_DIR", defaults.spool_dir)),
        tokenizer_cache_dir=Path(cache_dir) if cache_dir else None,
        budgets_when_db_down=raw.get("BUDGETS_WHEN_DB_DOWN", defaults.budgets_when_db_down),
        unpriced=raw.get("UNPRICED", defaults.unpriced),
        otel_endpoint=raw.get("OTEL_ENDPOINT") or None,
        otel_service_name=raw.get("OTEL_SERVICE_NAME") or defaults.otel_service_name,
    )
