"""The bodies of the simulator's unscripted answers: chat completions, streams and model lists.

Pure functions of the request (plus the knobs they are given), so the same request always gets
the same answer and the token counts are plausible without a tokenizer: stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from apps.llm.testing.responses import SimResponse, SSEItem, missing_parameter

__all__ = [
    "DEFAULT_MODELS",
    "add_openrouter_cost",
    "chat_completion",
    "chat_stream",
    "content_tokens",
    "estimate_tokens",
    "model_list",
    "model_object",
]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)

Catalog = Mapping[str, Mapping[str, Any]]


# -- models ---------------------------------------------------------------------------------------


def model_object(model_id: str) -> dict[str, Any]:
    """One entry of ``GET /v1/models``, as OpenAI lists it."""
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    return {"object": "list", "data": [model_object(m) for m in models]}


# -- token estimates ------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """About four characters per token, as OpenAI's rule of thumb says."""
    return (len(text) + 3) // 4


def content_tokens(content: Any) -> int:
    """Tokens of a message's content, text or a list of parts (images at a flat rate)."""
    if isinstance(content, str):
        return estimate_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += estimate_tokens(part["text"])
            else:
                total += 85  # what a low-detail image costs
        return total
    return 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# -- chat -----------------------------------------------------------------------------------------


def _answer(messages: list[Any], digest: str, response_format: Any) -> str:
    said = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            said = " ".join(_content_text(message.get("content")).split())
            break
    if len(said) > 80:
        said = said[:77] + "..."
    answer = f"Simulated reply {digest[:6]}. You said: {said}" if said else f"Simulated reply {digest[:6]}."
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return json.dumps({"reply": answer})
    return answer


def _forced_tool_call(body: dict[str, Any], digest: str) -> dict[str, Any] | None:
    """A tool call when the request forces one (``tool_choice`` "required" or a named function)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or not (choice == "required" or isinstance(choice, dict)):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    else:
        name = (tools[0].get("function") or {}).get("name") if isinstance(tools[0], dict) else None
    return {"id": "call_" + digest[:24], "type": "function", "function": {"name": name or "tool", "arguments": "{}"}}


def chat_stream(
    common: dict[str, Any],
    answer: str | None,
    tool_call: dict[str, Any] | None,
    finish_reason: str,
    usage: dict[str, Any] | None,
) -> list[SSEItem]:
    """The SSE events of a streamed completion, one word per chunk so clients really reassemble it."""
    # Like OpenAI: every chunk carries "usage": null when a usage chunk will follow.
    base = {**common, "object": "chat.completion.chunk"}
    if usage is not None:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    events: list[SSEItem] = []
    if tool_call:
        call = {**tool_call, "index": 0, "function": {"name": tool_call["function"]["name"], "arguments": ""}}
        events.append(chunk({"role": "assistant", "content": None, "tool_calls": [call]}))
        args = tool_call["function"]["arguments"]
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args}}]}))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        words = (answer or "").split(" ")
        for i, word in enumerate(words):
            events.append(chunk({"content": word if i == 0 else " " + word}))
    events.append(chunk({}, finish_reason))
    if usage is not None:
        events.append({**base, "choices": [], "usage": usage})
    events.append("[DONE]")
    return events


def _context_check(catalog: Catalog, model: str, prompt_tokens: int, flavour: str) -> SimResponse | None:
    entry = catalog.get(model) or catalog.get(f"openai/{model}")
    limit = entry.get("context_length") if entry else None
    if not isinstance(limit, int) or prompt_tokens <= limit:
        return None
    if flavour == "openrouter":
        return SimResponse(
            status=400,
            json={
                "error": {
                    "message": f"This endpoint's maximum context length is {limit} tokens. "
                    f"However, you requested about {prompt_tokens} tokens. Please reduce the length.",
                    "code": 400,
                }
            },
        )
    return SimResponse.error(
        400,
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
        f"{prompt_tokens} tokens. Please reduce the length of the messages.",
        param="messages",
        code="context_length_exceeded",
    )


def add_openrouter_cost(usage: dict[str, Any], catalog: Catalog, model: str) -> None:
    """Add OpenRouter's ``usage.cost`` when the catalog prices the model."""
    entry = catalog.get(model)
    pricing = entry.get("pricing") if entry else None
    if not isinstance(pricing, Mapping):
        return

    def price(key: str) -> Decimal:
        return Decimal(str(pricing.get(key) or "0"))

    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    prompt_cost = (usage["prompt_tokens"] - cached) * price("prompt") + cached * price("input_cache_read")
    completion_cost = usage.get("completion_tokens", 0) * price("completion")
    cost = float(prompt_cost + completion_cost)
    usage["cost"] = cost
    usage["is_byok"] = False
    usage["cost_details"] = {
        "upstream_inference_cost": cost,
        "upstream_inference_prompt_cost": float(prompt_cost),
        "upstream_inference_completions_cost": float(completion_cost),
    }


def chat_completion(
    body: dict[str, Any],
    flavour: str,
    *,
    catalog: Catalog,
    ids: Iterator[int],
    reasoning_tokens: int = 0,
    cached_fraction: float = 0.0,
) -> SimResponse:
    """The answer to ``POST chat/completions``: a completion, a stream, or the error OpenAI would send.

    The reply is derived from a digest of the model and messages, so repeating a request repeats
    the answer (what response caches are tested with); ``ids`` numbers the calls that get one.
    """
    model = body.get("model")
    messages = body.get("messages")
    if not model:
        return missing_parameter("model")
    if not isinstance(messages, list) or not messages:
        return missing_parameter("messages")
    digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    prompt_tokens = 3 + sum(4 + content_tokens(m.get("content")) for m in messages if isinstance(m, dict))
    if body.get("tools"):
        prompt_tokens += estimate_tokens(json.dumps(body["tools"]))
    too_long = _context_check(catalog, model, prompt_tokens, flavour)
    if too_long is not None:
        return too_long

    tool_call = _forced_tool_call(body, digest)
    answer = None if tool_call else _answer(messages, digest, body.get("response_format"))
    finish_reason = "tool_calls" if tool_call else "stop"
    completion_tokens = estimate_tokens(tool_call["function"]["arguments"] if tool_call else answer or "")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if answer and isinstance(limit, int) and 0 < limit < completion_tokens:
        answer, completion_tokens, finish_reason = answer[: limit * 4], limit, "length"
    completion_tokens += reasoning_tokens
    cached = int(prompt_tokens * cached_fraction)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    seq = next(ids)
    created = int(time.time())
    if flavour == "openrouter":
        completion_id = f"gen-{created}-sim{seq:x}{digest[:12]}"
    else:
        completion_id = f"chatcmpl-sim{seq:x}{digest[:16]}"
    common: dict[str, Any] = {
        "id": completion_id,
        "created": created,
        "model": model,
        "system_fingerprint": "fp_sim" + digest[-8:],
    }
    if flavour == "openrouter":
        common["provider"] = "Simulator"
        add_openrouter_cost(usage, catalog, model)
    headers = {"x-request-id": f"req_sim{seq:x}{digest[:16]}"}
    stream_options = body.get("stream_options") or {}
    if body.get("stream"):
        # OpenRouter always ends a stream with usage; OpenAI only when asked to.
        with_usage = flavour == "openrouter" or bool(stream_options.get("include_usage"))
        events = chat_stream(common, answer, tool_call, finish_reason, usage if with_usage else None)
        if flavour == "openrouter":
            events.insert(0, b": OPENROUTER PROCESSING\n\n")
        return SimResponse(sse=events, headers=headers)
    message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
    if tool_call:
        message["tool_calls"] = [tool_call]
    completion = {
        **common,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
        "service_tier": "default",
    }
    return SimResponse(json=completion, headers=headers)
