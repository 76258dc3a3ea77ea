"""LLM client library and accounting.

    from apps.llm import LLMClient
    client = LLMClient()
    r = client.chat_completion(messages=[{"role": "user", "content": "Hi"}], model="openai/gpt-4o-mini")
    r.content, r.usage, r.cost, r.cached

The names below are imported on first use: Django imports this package while it loads its
apps, before models can be imported.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LLMClient": "client",
    "ChatStream": "transport.streaming",
    "ChatResponse": "types",
    "EmbeddingResponse": "types",
    "Usage": "types",
    "UsageStats": "types",
    "CacheInfo": "cache",
    "LLMCache": "cache",
    "ModelPricing": "pricing.sheets",
    "ModelsCache": "pricing.lookup",
    "calculate_chat_cost": "costs",
    "calculate_cost": "costs",
    "Tokenizer": "tokenizer",
    "JSONExtractor": "extractor",
    "JSONExtractionError": "extractor",
    "llm_context": "accounting.context",
    "llm_trace": "accounting.traces",
    "usage_stats": "accounting.usage",
    "usage_for": "accounting.usage",
    "default_client": "client",
    "BudgetExceeded": "errors",
    "RetryPolicy": "transport.retry",
    # Extension points: providers are registered data, recorders receive every call.
    "ProviderSpec": "transport.providers",
    "register_provider": "transport.providers",
    "CallRecord": "accounting.records",
    "Recorder": "accounting.records",
    "LLMError": "errors",
    "ConfigurationError": "errors",
    "NoProviderConfigured": "errors",
    "AuthenticationError": "errors",
    "QuotaExceeded": "errors",
    "RateLimitError": "errors",
    "LLMTimeoutError": "errors",
    "ProviderConnectionError": "errors",
    "ServerError": "errors",
    "BadRequestError": "errors",
    "ModelNotFound": "errors",
    "ContextLengthExceeded": "errors",
    "ContentFiltered": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
