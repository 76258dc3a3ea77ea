"""Conversion of the ``openai`` SDK's objects into the client's typed results."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.llm.errors import BadRequestError, ContentFiltered, InvalidResponse, ServerError
from apps.llm.types import ChatResponse, Usage


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(obj)


def usage_from_sdk(usage: Any) -> Usage:
    """``Usage`` from an SDK usage object, including OpenRouter's extra fields."""
    data = _as_dict(usage)
    if not data:
        return Usage()
    prompt = data.get("prompt_tokens") or 0
    completion = data.get("completion_tokens") or 0
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    cost = data.get("cost")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=data.get("total_tokens") or prompt + completion,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        cache_write_tokens=prompt_details.get("cache_write_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        # The SDK parsed the JSON number as a float; str() gives back its shortest exact text.
        provider_cost=Decimal(str(cost)) if cost is not None else None,
    )


def error_in_body(body: dict[str, Any], *, provider: str, model: str) -> Exception:
    """The typed error for an ``{"error": {...}}`` sent with HTTP 200 (OpenRouter does this)."""
    error = body.get("error") or {}
    message = str(error.get("message") or error)
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500:
        return BadRequestError(message, provider=provider, model=model, status_code=code)
    return ServerError(message, provider=provider, model=model, status_code=code if isinstance(code, int) else None)


def chat_response_from_completion(completion: Any, *, provider: str, requested_model: str) -> ChatResponse:
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
    usage = usage_from_sdk(completion.usage)
    return ChatResponse(
        content=content,
        model=completion.model or requested_model,
        requested_model=requested_model,
        provider=provider,
        usage=usage,
        provider_cost=usage.provider_cost,
        finish_reason=choice.finish_reason,
        tool_calls=[call.model_dump() for call in message.tool_calls] if message.tool_calls else None,
        request_id=completion.id,
    )
