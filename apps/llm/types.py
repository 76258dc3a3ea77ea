"""Typed results of the LLM client (Pydantic 2), readable as attributes or as a mapping.

``r.content`` and ``r["content"]`` / ``r.get("cost", 0)`` give the same value, so code written
against the dict-returning wrappers of old keeps working.
"""

from __future__ import annotations

from decimal import Decimal
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MappingAccess(BaseModel):
    """Adds read-only ``obj["field"]``, ``obj.get()``, ``in`` and ``keys()`` to a model."""

    model_config = ConfigDict(frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        # dict semantics: a field that is None stays None (an unknown cost is not 0).
        return getattr(self, key) if key in type(self).model_fields else default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def keys(self) -> list[str]:
        return list(type(self).model_fields)


class Usage(MappingAccess):
    """What a call consumed, as the provider reported it (and, for two counts, as the request shows).

    The OpenAI convention: a detail count is part of the count it details, never added to it.
    Prompt tokens are split two ways at once: by cache state (``cached_tokens`` read from the
    cache, ``cache_write_tokens`` written to it, the rest uncached) and by modality
    (``audio_tokens``, ``image_tokens``, the rest text); ``cached_audio_tokens`` is where the two
    meet. ``USAGE_PARTS`` lists every part and its whole; ``inconsistency()`` checks them.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: Part of ``prompt_tokens``: read from the provider's prompt cache.
    cached_tokens: int = 0
    #: Part of ``prompt_tokens``: written to the prompt cache (any time to live).
    cache_write_tokens: int = 0
    #: Part of ``cache_write_tokens``: written with a 1-hour time to live (Anthropic's extended
    #: cache, dearer than the default 5 minutes). Providers do not report it: the request's
    #: ``cache_control`` marks say it (``apps.llm.costs.usage_with_request``).
    cache_write_1h_tokens: int = 0
    #: Part of ``prompt_tokens``: audio input.
    audio_tokens: int = 0
    #: Part of both ``cached_tokens`` and ``audio_tokens``: audio input read from the cache.
    cached_audio_tokens: int = 0
    #: Part of ``prompt_tokens``: image input counted as tokens.
    image_tokens: int = 0
    #: Part of ``completion_tokens``: thinking before the answer.
    reasoning_tokens: int = 0
    #: Part of ``completion_tokens``: generated audio.
    output_audio_tokens: int = 0
    #: Part of ``completion_tokens``: generated images.
    output_image_tokens: int = 0
    #: Images in the request (a count, not tokens), for prices per input image. Providers do
    #: not report it: the request's ``image_url`` parts say it (``usage_with_request``).
    input_images: int = 0
    #: Web searches the provider ran for the call (a count), for prices per search.
    web_search_requests: int = 0
    # What the provider says the call cost (OpenRouter's usage.cost), when it says so.
    provider_cost: Decimal | None = None

    def reconciled(self) -> Usage:
        """These counts with every whole raised to at least the sum of its parts (nothing lowered)."""
        if self._consistent():
            return self
        counts = {name: getattr(self, name) for name in USAGE_COUNTS}
        for _ in USAGE_PARTS:  # until stable: a raised part may be another split's whole
            before = dict(counts)
            for whole, parts in USAGE_PARTS:
                counts[whole] = max(counts[whole], sum(counts[part] for part in parts))
            if counts == before:
                break
        counts["total_tokens"] = max(counts["total_tokens"], counts["prompt_tokens"] + counts["completion_tokens"])
        return self if all(counts[n] == getattr(self, n) for n in USAGE_COUNTS) else self.model_copy(update=counts)

    def inconsistency(self) -> str | None:
        """Why these counts cannot be true (a negative count, parts above their whole), or ``None``."""
        if self._consistent():
            return None
        for name in USAGE_COUNTS:
            value = getattr(self, name)
            if value < 0:
                return f"{name} is negative ({value})"
        for whole, parts in USAGE_PARTS:
            total = sum(getattr(self, part) for part in parts)
            if total > getattr(self, whole):
                named = " + ".join(f"{part} ({getattr(self, part)})" for part in parts if getattr(self, part))
                return f"{named} exceed {whole} ({getattr(self, whole)})"
        return None

    def _consistent(self) -> bool:
        """No count negative, no part above its whole, the total at least prompt + completion.

        Written out, not looped over ``USAGE_PARTS``: every call's usage is checked (twice), and
        almost every usage passes (``test_usage_parts_checked_in_full`` pins the two to each other).
        """
        c = self.__dict__
        return (
            min(_counts_of(self)) >= 0
            and c["cached_tokens"] + c["cache_write_tokens"] <= c["prompt_tokens"]
            and c["audio_tokens"] + c["image_tokens"] <= c["prompt_tokens"]
            and c["cache_write_1h_tokens"] <= c["cache_write_tokens"]
            and c["cached_audio_tokens"] <= min(c["cached_tokens"], c["audio_tokens"])
            and c["reasoning_tokens"] + c["output_audio_tokens"] + c["output_image_tokens"] <= c["completion_tokens"]
            and c["prompt_tokens"] + c["completion_tokens"] <= c["total_tokens"]
        )


#: The counts of a ``Usage`` (every field but the provider's cost).
USAGE_COUNTS: tuple[str, ...] = tuple(name for name in Usage.model_fields if name != "provider_cost")
_counts_of = attrgetter(*USAGE_COUNTS)

#: (whole, parts): the parts of one split of a count, which together cannot exceed it.
USAGE_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompt_tokens", ("cached_tokens", "cache_write_tokens")),
    ("prompt_tokens", ("audio_tokens", "image_tokens")),
    ("cache_write_tokens", ("cache_write_1h_tokens",)),
    ("cached_tokens", ("cached_audio_tokens",)),
    ("audio_tokens", ("cached_audio_tokens",)),
    ("completion_tokens", ("reasoning_tokens", "output_audio_tokens", "output_image_tokens")),
)


class ChatResponse(MappingAccess):
    """One chat completion, from the provider or from the cache."""

    content: str
    #: The model that answered, as the provider named it (OpenRouter: its canonical slug).
    model: str
    requested_model: str
    provider: str
    usage: Usage = Usage()
    #: Our cost in USD from the price table; ``None`` for a model without a known price.
    #: A cache hit costs 0 and reports what it saved in ``saved_cost``.
    cost: Decimal | None = None
    provider_cost: Decimal | None = None
    saved_cost: Decimal | None = None
    #: The ``ModelPrice`` row ``cost`` was computed from: the audit trail of the price.
    price_id: int | None = None
    #: How ``cost`` was computed: one line per price component charged.
    cost_breakdown: list[dict[str, str]] | None = None
    cached: bool = False
    #: The token counts were counted locally: the provider reported none (see ``CallRecord``).
    usage_estimated: bool = False
    #: The model had no price; ``cost`` is a conservative estimate.
    price_estimated: bool = False
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    attempts: int = 1
    request_id: str | None = None

    def json(self, *, strict: bool = False, schema: Any = None) -> Any:  # type: ignore[override]  # deliberately replaces pydantic's deprecated json()
        """The JSON value in ``content`` (see ``JSONExtractor``)."""
        from apps.llm.extractor import JSONExtractor

        return JSONExtractor().extract_json_from_response(self.content, strict=strict, schema=schema)


class EmbeddingResponse(MappingAccess):
    """Embeddings of one text (``embedding``) or of a batch (``embeddings``, in input order)."""

    embeddings: list[list[float]]
    model: str
    provider: str
    usage: Usage = Usage()
    cost: Decimal | None = None
    saved_cost: Decimal | None = None
    price_id: int | None = None
    #: How ``cost`` was computed: one line per price component charged.
    cost_breakdown: list[dict[str, str]] | None = None
    cached: bool = False
    latency_ms: float = 0.0
    #: Provider requests made: a large batch is split to the provider's limits.
    requests: int = 1

    @property
    def embedding(self) -> list[float]:
        return self.embeddings[0]

    @property
    def dimensions(self) -> int:
        return len(self.embeddings[0]) if self.embeddings else 0

    def __getitem__(self, key: str) -> Any:
        if key in ("embedding", "dimensions"):
            return getattr(self, key)
        return super().__getitem__(key)


def cache_misses(requests: int, cache_hits: int, failures: int, refusals: int = 0) -> int:
    """Calls that looked in the cache and found nothing: a failed or refused call neither hit nor missed it."""
    return requests - cache_hits - failures - refusals


class UsageStats(MappingAccess):
    """Totals of many calls: of a client in this process, or from the database rollups."""

    total_requests: int = 0
    total_tokens: int = 0
    total_cost: Decimal = Field(default=Decimal(0))
    saved_cost: Decimal = Field(default=Decimal(0))
    cache_hits: int = 0
    cache_misses: int = 0
    cache_hit_rate: float = 0.0
    models_used: list[str] = Field(default_factory=list)
    errors: int = 0
    #: Calls the platform refused before sending (budgets): not errors.
    refused: int = 0

    @classmethod
    def of_counts(
        cls,
        *,
        requests: int,
        failures: int,
        refusals: int = 0,
        cache_hits: int,
        total_tokens: int,
        total_cost: Decimal,
        saved_cost: Decimal = Decimal(0),
        models_used: list[str],
    ) -> UsageStats:
        misses = cache_misses(requests, cache_hits, failures, refusals)
        return cls(
            total_requests=requests,
            total_tokens=total_tokens,
            total_cost=total_cost,
            saved_cost=saved_cost,
            cache_hits=cache_hits,
            cache_misses=misses,
            cache_hit_rate=cache_hits / (cache_hits + misses) if cache_hits + misses else 0.0,
            models_used=models_used,
            errors=failures,
            refused=refusals,
        )
