"""Conversion of the ``openai`` SDK's objects into the client's typed results."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from apps.llm.errors import BadRequestError, ContentFiltered, InvalidResponse, InvalidUsage, ServerError
from apps.llm.types import ChatResponse, Usage

logger = logging.getLogger(__name__)


def _values(obj: Any) -> dict[str, Any]:
    """The fields of a dict or of an SDK object (its declared fields and the extra ones it was sent).

    The SDK builds its objects without validating them: a count of the wrong type is read as
    it came, and reported by ``_count`` (``InvalidUsage``), not by a serializer. A pydantic
    model keeps its fields in ``__dict__`` and extras in ``__pydantic_extra__``: read there, no
    ``getattr()`` (which raises, and catches, an AttributeError for a missing key in pydantic).
    """
    if isinstance(obj, dict):
        return obj
    values = getattr(obj, "__dict__", None) or {}
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**extra, **values} if extra else values


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` of a dict, or the field of an SDK object (see ``_values``)."""
    return _values(obj).get(key)


#: Where each ``Usage`` count is in a provider's usage object: (path, field). OpenAI and
#: OpenRouter's chat completions share the shape; OpenRouter adds ``cache_write_tokens`` and
#: ``server_tool_use_details``. Counts the provider does not report (1-hour cache writes,
#: input images) come from the request instead (``apps.llm.costs.usage_with_request``).
USAGE_SOURCES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("prompt_tokens",), "prompt_tokens"),
    (("completion_tokens",), "completion_tokens"),
    (("total_tokens",), "total_tokens"),
    (("prompt_tokens_details", "cached_tokens"), "cached_tokens"),
    (("prompt_tokens_details", "cache_write_tokens"), "cache_write_tokens"),
    (("prompt_tokens_details", "audio_tokens"), "audio_tokens"),
    # OpenAI's convention for cached audio (its Realtime API's input_token_details); no chat
    # provider is known to send it yet, but when one does its cached-audio price applies.
    (("prompt_tokens_details", "cached_tokens_details", "audio_tokens"), "cached_audio_tokens"),
    (("prompt_tokens_details", "image_tokens"), "image_tokens"),
    (("completion_tokens_details", "reasoning_tokens"), "reasoning_tokens"),
    (("completion_tokens_details", "audio_tokens"), "output_audio_tokens"),
    (("completion_tokens_details", "image_tokens"), "output_image_tokens"),
    (("server_tool_use_details", "web_search_requests"), "web_search_requests"),
)


def usage_from_sdk(usage: Any, *, provider: str | None = None, model: str | None = None) -> Usage:
    """``Usage`` from an SDK usage object (or its dict), including OpenRouter's extra fields.

    Counts that cannot be read (not a whole number, negative) raise ``InvalidUsage`` naming the
    field: a garbled usage must not be priced. Parts larger than their whole (OpenRouter has
    reported 11 reasoning tokens of 10 output tokens) are reconciled: the whole is raised to
    its parts, which never charges less than the provider reported.
    """
    if not usage:
        return Usage()
    counts = {}
    # Each object on a path is read once, whatever number of counts it holds (every call pays this).
    objects: dict[tuple[str, ...], dict[str, Any] | None] = {(): _values(usage)}
    for path, name in USAGE_SOURCES:
        holder = _object_at(objects, path[:-1])
        if holder is None:
            continue
        value = holder.get(path[-1])
        if type(value) is int and value >= 0:  # the common case, checked without a call
            if value:
                counts[name] = value
        elif value is not None:
            counts[name] = _count(value, path, provider=provider, model=model)
    if not counts.get("total_tokens"):  # some servers send none, or 0
        counts["total_tokens"] = counts.get("prompt_tokens", 0) + counts.get("completion_tokens", 0)
    cost = _field(usage, "cost")
    parsed = Usage(
        **counts,
        # The SDK parsed the JSON number as a float; str() gives back its shortest exact text.
        provider_cost=_provider_cost(cost, provider=provider, model=model),
    )
    reconciled = parsed.reconciled()
    if reconciled is not parsed:
        logger.info("Usage counts reconciled (%s): %s", parsed.inconsistency(), provider or "provider")
    return reconciled


def _object_at(objects: dict[tuple[str, ...], dict[str, Any] | None], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The fields of the object at ``path`` (``None`` when absent), remembered in ``objects``."""
    if path not in objects:
        parent = _object_at(objects, path[:-1])
        found = None if parent is None else parent.get(path[-1])
        objects[path] = None if found is None else _values(found)
    return objects[path]


def _count(value: Any, path: tuple[str, ...], *, provider: str | None, model: str | None) -> int:
    """``value`` read as a count: a whole, non-negative number, or ``InvalidUsage`` naming where it was."""
    where = "usage." + ".".join(path)
    # A JSON number with a zero fraction (12.0) is a whole count; bool is an int subclass, not a count.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidUsage(f"{where} is not a whole number: {value!r}", provider=provider, model=model)
    if value < 0:
        raise InvalidUsage(f"{where} is negative ({value})", provider=provider, model=model)
    return value


def _provider_cost(cost: Any, *, provider: str | None, model: str | None) -> Decimal | None:
    if cost is None:
        return None
    try:
        value = Decimal(str(cost))
    except ArithmeticError:
        value = None
    if value is None or isinstance(cost, bool) or not value.is_finite():
        raise InvalidUsage(f"usage.cost is not a number: {cost!r}", provider=provider, model=model)
    return value


def error_in_body(body: dict[str, Any], *, provider: str, model: str) -> Exception:
    """The typed error for an ``{"error": {...}}`` sent with HTTP 200 (OpenRouter does this)."""
    error = body.get("error") or {}
    message = str(error.get("message") or error)
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500:
        return BadRequestError(message, provider=provider, model=model, status_code=code)
    return ServerError(message, provider=provider, model=model, status_code=code if isinstance(code, int) else None)


def chat_fields_from_completion(completion: Any, *, provider: str, requested_model: str) -> dict[str, Any]:
    """The ``ChatResponse`` fields an SDK chat completion gives (the client adds cost and timing, then builds it once)."""
    choices = completion.choices
    if not choices and (completion.model_extra or {}).get("error"):
        raise error_in_body(completion.model_extra or {}, provider=provider, model=requested_model)
    if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
        raise InvalidResponse(
            "The provider's answer has no choices: it is not a chat completion",
            provider=provider,
            model=requested_model,
        )
    choice = choices[0]
    message = choice.message
    content = message.content or ""
    if choice.finish_reason == "content_filter" and not content:
        raise ContentFiltered(
            "The provider's content filter withheld the answer",
            provider=provider,
            model=completion.model or requested_model,
        )
    usage = usage_from_sdk(completion.usage, provider=provider, model=completion.model or requested_model)
    return {
        "content": content,
        "model": completion.model or requested_model,
        "requested_model": requested_model,
        "provider": provider,
        "usage": usage,
        "provider_cost": usage.provider_cost,
        "finish_reason": choice.finish_reason,
        "tool_calls": [call.model_dump() for call in message.tool_calls] if message.tool_calls else None,
        "request_id": completion.id,
    }


def chat_response_from_completion(completion: Any, *, provider: str, requested_model: str) -> ChatResponse:
    return ChatResponse(**chat_fields_from_completion(completion, provider=provider, requested_model=requested_model))
