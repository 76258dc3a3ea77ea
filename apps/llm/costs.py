"""The exact cost of a call: what it consumed times the price sheet, in ``Decimal`` end to end.

The arithmetic runs in a decimal context that traps ``Inexact``: a result that could not be
represented exactly raises instead of being rounded, so a stored cost is always the exact
product of the counts and the prices (and equals OpenRouter's ``usage.cost`` when both
start from the same prices).

A cost is a ``CostBreakdown``: one line per price component charged (component, quantity,
unit, unit price, amount), their total and the price sheet used. ``CostBreakdown.lines()`` is
its JSON form, kept on the request log so that every stored cost can be audited.
"""

from __future__ import annotations

import decimal
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from apps.llm.pricing.lookup import ModelsCache
from apps.llm.pricing.sheets import PRICE_COMPONENTS, ModelPricing, plain_decimal
from apps.llm.types import Usage

logger = logging.getLogger(__name__)

# 60 significant digits hold any product of a token count and a 24-decimal-place price.
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])

TOKEN = "token"
IMAGE = "image"
SEARCH = "search"
REQUEST = "request"


@dataclass(frozen=True)
class Component:
    """A price component: what is counted, in which unit, and the catalog prices that may apply.

    ``prices`` are catalog keys tried in order: the first the sheet prices (non-zero) is used,
    so a cache read of a model without a cache price costs its prompt price, reasoning without
    a price of its own costs the completion price. A per-unit component has no fallback: a
    model without a web-search price charges nothing per search.
    """

    name: str
    label: str
    unit: str
    prices: tuple[str, ...]


#: Every component a call can be charged, in the order a breakdown lists them. The names are
#: the catalog's, so a line reads against the price list it came from.
COMPONENTS: tuple[Component, ...] = (
    Component("prompt", "Input", TOKEN, ("prompt",)),
    Component("input_cache_read", "Cached input (read)", TOKEN, ("input_cache_read", "prompt")),
    Component("input_cache_write", "Cache write (5 min)", TOKEN, ("input_cache_write", "prompt")),
    # Without a 1-hour price the 5-minute one is the best known (Anthropic lists both or neither).
    Component(
        "input_cache_write_1h", "Cache write (1 hour)", TOKEN, ("input_cache_write_1h", "input_cache_write", "prompt")
    ),
    Component("audio", "Audio input", TOKEN, ("audio", "prompt")),
    Component("input_audio_cache", "Cached audio input", TOKEN, ("input_audio_cache", "audio", "prompt")),
    Component("image_token", "Image input tokens", TOKEN, ("image_token", "prompt")),
    Component("image", "Input images", IMAGE, ("image",)),
    Component("completion", "Output", TOKEN, ("completion",)),
    Component("internal_reasoning", "Reasoning", TOKEN, ("internal_reasoning", "completion")),
    Component("audio_output", "Audio output", TOKEN, ("audio_output", "completion")),
    Component("image_output", "Image output", TOKEN, ("image_output", "completion")),
    Component("web_search", "Web searches", SEARCH, ("web_search",)),
    Component("request", "Per request", REQUEST, ("request",)),
)
COMPONENTS_BY_NAME = {component.name: component for component in COMPONENTS}


def component_label(name: str) -> str:
    """How people call a component ("Cache write (1 hour)"); unknown names are shown as they are."""
    component = COMPONENTS_BY_NAME.get(name)
    return component.label if component else name


class CostLine(BaseModel):
    """One component of a cost: ``quantity`` ``unit``s at ``unit_price`` (the sheet's ``priced_as``)."""

    model_config = ConfigDict(frozen=True)

    component: str
    quantity: int
    unit: str
    unit_price: Decimal
    #: The catalog price used: the component's own, or the one it falls back to.
    priced_as: str
    amount: Decimal

    def as_json(self) -> dict[str, str]:
        """Exact decimal strings without exponent ("0.00000375", never "3.75E-6")."""
        return {
            "component": self.component,
            "quantity": str(self.quantity),
            "unit": self.unit,
            "unit_price": plain_decimal(self.unit_price),
            "priced_as": self.priced_as,
            "amount": plain_decimal(self.amount),
        }


class CostBreakdown(BaseModel):
    """What each component of a call cost, in USD, and the price sheet (tier applied) it used."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[CostLine, ...]
    total: Decimal
    pricing: ModelPricing

    def lines(self) -> list[dict[str, str]]:
        """The breakdown as JSON-ready lines (``CallRecord.cost_breakdown``, ``LLMRequest.cost_breakdown``)."""
        return [part.as_json() for part in self.parts]

    def amount(self, component: str) -> Decimal:
        """What ``component`` cost (0 when it was not charged)."""
        return sum((part.amount for part in self.parts if part.component == component), Decimal(0))

    def quantity(self, component: str) -> int:
        return sum(part.quantity for part in self.parts if part.component == component)


def calculate_cost(pricing: ModelPricing, usage: Usage) -> CostBreakdown:
    """The cost of ``usage`` at ``pricing``.

    ``usage`` follows the OpenAI convention (see ``Usage``): details are parts of the count
    they detail. Every component the usage reports is charged at its own price when the
    sheet has one, else at the price it falls back to (``COMPONENTS``). The price tier is
    chosen by the prompt size. Impossible counts raise ``ValueError``.
    """
    problem = usage.inconsistency()
    if problem is not None:
        raise ValueError(problem)
    sheet = pricing.for_prompt_tokens(usage.prompt_tokens)
    parts = []
    with decimal.localcontext(_EXACT):
        for component, quantity in _quantities(usage, sheet):
            priced_as, unit_price = _unit_price(sheet, component)
            parts.append(
                # Built from typed values computed here: nothing for a validator to check.
                CostLine(
                    component=component.name,
                    quantity=quantity,
                    unit=component.unit,
                    unit_price=unit_price,
                    priced_as=priced_as,
                    amount=quantity * unit_price,
                )
            )
        total = sum((part.amount for part in parts), Decimal(0))
    return CostBreakdown(parts=tuple(parts), total=total, pricing=sheet)


def _quantities(usage: Usage, sheet: ModelPricing) -> Iterator[tuple[Component, int]]:
    """How much of each component ``usage`` consumed; the components it did not use are left out."""
    u = usage.__dict__  # every call is priced: its counts are read once, from the model's own dict
    uncached = u["prompt_tokens"] - u["cached_tokens"] - u["cache_write_tokens"]
    # Modality and cache state split the prompt independently, and only cached audio is
    # reported where they meet. Audio and image tokens are taken as uncached as far as the
    # uncached tokens go; any beyond were read from or written to the cache, and are charged
    # at the cache prices with the rest of those tokens.
    uncached_audio = min(u["audio_tokens"] - u["cached_audio_tokens"], uncached)
    image_tokens = min(u["image_tokens"], uncached - uncached_audio)
    completion_parts = u["reasoning_tokens"] + u["output_audio_tokens"] + u["output_image_tokens"]
    quantities = (
        uncached - uncached_audio - image_tokens,  # prompt
        u["cached_tokens"] - u["cached_audio_tokens"],  # input_cache_read
        u["cache_write_tokens"] - u["cache_write_1h_tokens"],  # input_cache_write
        u["cache_write_1h_tokens"],  # input_cache_write_1h
        uncached_audio,  # audio
        u["cached_audio_tokens"],  # input_audio_cache
        image_tokens,  # image_token
        u["input_images"],  # image
        u["completion_tokens"] - completion_parts,  # completion
        u["reasoning_tokens"],  # internal_reasoning
        u["output_audio_tokens"],  # audio_output
        u["output_image_tokens"],  # image_output
        u["web_search_requests"],  # web_search
        # Every call is one request; a line for a fee the model does not have would be noise.
        1 if sheet.request else 0,  # request
    )
    return ((component, quantity) for component, quantity in zip(COMPONENTS, quantities, strict=True) if quantity > 0)


def _unit_price(sheet: ModelPricing, component: Component) -> tuple[str, Decimal]:
    for key in component.prices:
        price = getattr(sheet, key) if key in PRICE_COMPONENTS else sheet.extra_prices.get(key, Decimal(0))
        if price:
            return key, price
    # Nothing priced: the component's own price, which is 0 (a free model, a fee it has not).
    return component.prices[0], Decimal(0)


# -- what the request shows and the usage does not say ----------------------------------------------

#: Message parts that carry an image (Chat Completions; the Responses API).
IMAGE_PART_TYPES = frozenset({"image_url", "input_image"})
ONE_HOUR_TTL = "1h"


def usage_with_request(
    usage: Usage, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None
) -> Usage:
    """``usage`` completed with the counts only the request shows: input images and 1-hour cache writes.

    Providers report neither. The images are the ``image_url`` parts of ``messages``. Cache
    writes are 1-hour writes when the request marked its cache breakpoints
    ``cache_control: {"type": "ephemeral", "ttl": "1h"}`` (in messages, tools, or the top-level
    ``cache_control`` of ``params``/``params["extra_body"]``). Counts the provider did report
    are kept. Pure: nothing is sent or stored.
    """
    updates: dict[str, int] = {}
    if not usage.input_images:
        images = count_input_images(messages)
        if images:
            updates["input_images"] = images
    if usage.cache_write_tokens and not usage.cache_write_1h_tokens and _marks_one_hour_cache(messages, params):
        # Mixed marks (some 1h, some 5m): Anthropic writes the 1-hour segments first (it requires
        # 1h breakpoints before 5m ones), so the writes are a 1-hour prefix and a 5-minute tail
        # whose sizes the usage does not give. All of them are charged at the 1-hour rate: an
        # upper bound, so a budget never sees less than was spent; the tail is overstated by at
        # most the difference of the two write prices.
        updates["cache_write_1h_tokens"] = usage.cache_write_tokens
    return usage.model_copy(update=updates) if updates else usage


def count_input_images(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many images ``messages`` send (every message is input, an earlier answer's images too)."""
    count = 0
    for message in messages:
        # A plain dict first: the Mapping check is an ABC's, slow, and every call's messages pass here.
        content = message.get("content") if type(message) is dict or isinstance(message, Mapping) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, Mapping) and part.get("type") in IMAGE_PART_TYPES)
    return count


def _marks_one_hour_cache(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None) -> bool:
    params = params or {}
    # Where a request can carry marks: its messages, its tools, and OpenRouter's top-level
    # automatic caching (a keyword of its own, or in the SDK's extra_body).
    places = {key: params.get(key) for key in ("tools", "cache_control", "extra_body")} | {"messages": messages}
    return any(isinstance(mark, Mapping) and mark.get("ttl") == ONE_HOUR_TTL for mark in _cache_marks(places))


def _cache_marks(value: Any) -> Iterator[Any]:
    """Every ``cache_control`` value in a request structure, however deep (parts, messages, tools)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "cache_control":
                yield item
            else:
                yield from _cache_marks(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _cache_marks(item)


# -- the public helpers -------------------------------------------------------------------------------


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
