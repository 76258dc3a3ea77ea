"""The exact cost of a call: token counts times the price sheet, in ``Decimal`` end to end.

The arithmetic runs in a decimal context that traps ``Inexact``: a result that could not be
represented exactly raises instead of being rounded, so a stored cost is always the exact
product of the counts and the prices (and equals OpenRouter's ``usage.cost`` when both
start from the same prices).
"""

from __future__ import annotations

import decimal
import logging
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from apps.llm.pricing.lookup import ModelsCache
from apps.llm.pricing.sheets import ModelPricing
from apps.llm.types import Usage

logger = logging.getLogger(__name__)

# 60 significant digits hold any product of a token count and a 24-decimal-place price.
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


class CostBreakdown(BaseModel):
    """What each part of a call cost, in USD, and the price sheet (tier applied) it used."""

    model_config = ConfigDict(frozen=True)

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    request: Decimal
    total: Decimal
    pricing: ModelPricing


def calculate_cost(pricing: ModelPricing, usage: Usage) -> CostBreakdown:
    """The cost of ``usage`` at ``pricing``.

    ``usage`` follows the OpenAI convention: ``cached_tokens`` and ``cache_write_tokens`` are
    part of ``prompt_tokens``, ``reasoning_tokens`` part of ``completion_tokens``. Cache reads
    and writes without a price of their own cost the prompt price; reasoning without one costs
    the completion price. The price tier is chosen by the prompt size.
    """
    counts = (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )
    if min(counts) < 0:
        raise ValueError(f"negative token count in {usage!r}")
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    if uncached < 0:
        raise ValueError(
            f"cached_tokens ({usage.cached_tokens}) + cache_write_tokens ({usage.cache_write_tokens}) "
            f"exceed prompt_tokens ({usage.prompt_tokens})"
        )
    visible_output = usage.completion_tokens - usage.reasoning_tokens
    if visible_output < 0:
        raise ValueError(
            f"reasoning_tokens ({usage.reasoning_tokens}) exceed completion_tokens ({usage.completion_tokens})"
        )
    sheet = pricing.for_prompt_tokens(usage.prompt_tokens)
    with decimal.localcontext(_EXACT):
        parts = {
            "input": uncached * sheet.prompt,
            "cached_input": usage.cached_tokens * (sheet.input_cache_read or sheet.prompt),
            "cache_write": usage.cache_write_tokens * (sheet.input_cache_write or sheet.prompt),
            "output": visible_output * sheet.completion,
            "reasoning": usage.reasoning_tokens * (sheet.internal_reasoning or sheet.completion),
            "request": sheet.request,
        }
        total = sum(parts.values(), Decimal(0))
    return CostBreakdown(**parts, total=total, pricing=sheet)


def calculate_chat_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    models_cache: ModelsCache,
    *,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    provider: str | None = None,
) -> Decimal | None:
    """The cost in USD of a chat call, or ``None`` (with a warning) when the model has no price.

    ``None`` is never turned into 0: an unknown price must show as unknown, not as free.
    """
    pricing = models_cache.get(model, provider)
    if pricing is None:
        logger.warning("No price known for model %r (provider %s): cost not computed", model, provider or "any")
        return None
    usage = Usage(
        prompt_tokens=input_tokens,
        completion_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    return calculate_cost(pricing, usage).total


def calculate_embedding_cost(
    model: str, tokens: int, models_cache: ModelsCache, provider: str | None = None
) -> Decimal | None:
    """The cost in USD of embedding ``tokens`` input tokens, or ``None`` when the model has no price."""
    return calculate_chat_cost(model, tokens, 0, models_cache, provider=provider)
