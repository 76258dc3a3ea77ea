"""Usage parsing (apps/llm/transport/responses.py) from real recorded responses, through the SDK's own types.

Every count of ``Usage`` is read from where OpenAI and OpenRouter put it, and counts that
cannot be true are a typed ``InvalidResponse`` naming the field, never a raw ``ValueError``.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apps.llm.errors import InvalidResponse, InvalidUsage
from apps.llm.transport.responses import chat_response_from_completion, usage_from_sdk
from apps.llm.types import Usage
from tests.recorded import Record, load_records

OPENAI_CHAT = "openai-chat-responses-pydantic-ai-cassettes"
OPENROUTER_CHAT = "openrouter-chat-responses-pydantic-ai-cassettes"
DD_TRACE = "openai-responses-dd-trace-py-cassettes"


def record(file: str, cassette: str, index: int = 0) -> Record:
    return next(
        r for r in load_records(file) if r.source_file.endswith("/" + cassette) and r.interaction_index == index
    )


def sdk_completion(body: dict[str, Any]) -> ChatCompletion:
    # As the SDK builds a response: constructed, not validated (a wrong type reaches our parser).
    return ChatCompletion.construct(**copy.deepcopy(body))


def parsed(file: str, cassette: str, index: int = 0):
    """The recorded body as the SDK gives it, turned into our ``ChatResponse``."""
    body = record(file, cassette, index).body
    completion = sdk_completion(body)
    provider = "openrouter" if file == OPENROUTER_CHAT else "openai"
    return chat_response_from_completion(completion, provider=provider, requested_model=body["model"])


def final_chunk_usage(file: str, cassette: str) -> Usage:
    """The usage of a recorded stream's last usage chunk, parsed as the stream parser does."""
    usage = None
    for line in record(file, cassette).body.splitlines():
        if line.startswith("data: {"):
            chunk = ChatCompletionChunk.construct(**json.loads(line.removeprefix("data: ")))
            if chunk.usage is not None:
                usage = usage_from_sdk(chunk.usage)
    assert usage is not None
    return usage


# -- every count, from where the providers put it ---------------------------------------------------


def test_audio_input_tokens_openai():
    usage = parsed(OPENAI_CHAT, "test_audio_as_binary_content_input.yaml").usage
    assert (usage.prompt_tokens, usage.audio_tokens, usage.image_tokens) == (64, 44, 0)
    assert (usage.completion_tokens, usage.output_audio_tokens) == (9, 0)


def test_cache_writes_openai():
    usage = parsed(OPENAI_CHAT, "test_openai_chat_prompt_cache_e2e.yaml", 0).usage
    assert (usage.prompt_tokens, usage.cache_write_tokens, usage.cached_tokens) == (4020, 4012, 0)
    again = parsed(OPENAI_CHAT, "test_openai_chat_prompt_cache_e2e.yaml", 1).usage
    assert (again.cache_write_tokens, again.cached_tokens) == (0, 4012)
    # Nothing in a response says how long the cache lives: the request does (usage_with_request).
    assert usage.cache_write_1h_tokens == 0


def test_cache_write_and_reasoning_dd_trace():
    usage = parsed(DD_TRACE, "chat_completion_prompt_caching_5_6_cache_write.yaml").usage
    assert usage.cache_write_tokens == 1217 and usage.reasoning_tokens == 100


def test_cached_and_reasoning_tokens_openrouter():
    usage = parsed(OPENROUTER_CHAT, "test_openrouter_with_native_options.yaml").usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens) == (
        687,
        682,
        240,
        165,
    )


def test_web_search_requests_openrouter():
    response = parsed(OPENROUTER_CHAT, "test_openrouter_web_search_tool_usage.yaml")
    assert response.usage.web_search_requests == 1
    assert response.provider_cost == response.usage.provider_cost == Decimal("0.0133176")
    streamed = final_chunk_usage(OPENROUTER_CHAT, "test_openrouter_web_search_tool_usage_stream.yaml")
    assert streamed.web_search_requests == 1 and streamed.prompt_tokens == 8174


def test_server_tools_other_than_search_are_not_searches():
    usage = parsed(OPENROUTER_CHAT, "test_openrouter_advisor_tool.yaml").usage
    assert usage.web_search_requests == 0  # tool_calls_executed: 1 (an advisor), no search


def test_video_tokens_stay_in_the_prompt():
    # OpenRouter reports video_tokens; no price of their own: they are prompt tokens.
    usage = parsed(OPENROUTER_CHAT, "test_openrouter_binary_content_video_public_api.yaml").usage
    assert (usage.prompt_tokens, usage.image_tokens, usage.audio_tokens) == (270, 0, 0)


def test_every_count_from_a_full_usage():
    """A usage with every detail the parser reads, as OpenAI and OpenRouter name them."""
    usage = usage_from_sdk(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "total_tokens": 1500,
            "cost": 0.0123,
            "prompt_tokens_details": {
                "cached_tokens": 300,
                "cache_write_tokens": 200,
                "audio_tokens": 150,
                "image_tokens": 100,
                "cached_tokens_details": {"audio_tokens": 50},
            },
            "completion_tokens_details": {"reasoning_tokens": 120, "audio_tokens": 80, "image_tokens": 60},
            "server_tool_use_details": {"web_search_requests": 3},
        }
    )
    assert usage == Usage(
        prompt_tokens=1000,
        completion_tokens=500,
        total_tokens=1500,
        cached_tokens=300,
        cache_write_tokens=200,
        audio_tokens=150,
        cached_audio_tokens=50,
        image_tokens=100,
        reasoning_tokens=120,
        output_audio_tokens=80,
        output_image_tokens=60,
        web_search_requests=3,
        provider_cost=Decimal("0.0123"),
    )


def test_missing_and_null_details_are_zero():
    usage = usage_from_sdk({"prompt_tokens": 9, "completion_tokens": 10, "completion_tokens_details": None})
    assert usage == Usage(prompt_tokens=9, completion_tokens=10, total_tokens=19)
    assert usage_from_sdk(None) == Usage()
    assert usage_from_sdk({"prompt_tokens": 3.0, "completion_tokens": 1}).prompt_tokens == 3  # a whole JSON number


# -- counts that cannot be true ---------------------------------------------------------------------


def with_usage(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for path, value in changes.items():
        target = body["usage"]
        *parents, last = path.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return body


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt_tokens": -5}, r"usage\.prompt_tokens is negative \(-5\)"),
        ({"completion_tokens_details__reasoning_tokens": -1}, r"usage\.completion_tokens_details\.reasoning_tokens"),
        ({"prompt_tokens": "many"}, r"usage\.prompt_tokens is not a whole number: 'many'"),
        ({"prompt_tokens": 68.7}, r"usage\.prompt_tokens is not a whole number"),
        ({"server_tool_use_details__web_search_requests": True}, r"web_search_requests is not a whole number"),
        ({"cost": "free"}, r"usage\.cost is not a number"),
    ],
)
def test_impossible_usage_is_invalid_response(changes, message):
    body = with_usage(record(OPENROUTER_CHAT, "test_openrouter_with_native_options.yaml").body, **changes)
    completion = sdk_completion(body)
    with pytest.raises(InvalidResponse, match=message) as raised:
        chat_response_from_completion(completion, provider="openrouter", requested_model="x-ai/grok-4")
    error = raised.value
    # Not retried: the answer was generated (and billed); a second would be billed again.
    assert isinstance(error, InvalidUsage) and not isinstance(error, ValueError) and not error.retryable
    assert (error.provider, error.model) == ("openrouter", "x-ai/grok-4")


@pytest.mark.parametrize(
    ("changes", "raised"),
    [
        ({"prompt_tokens_details__cached_tokens": 700}, {"prompt_tokens": 700}),
        ({"prompt_tokens_details__cache_write_tokens": 10}, {"prompt_tokens": 682 + 10}),
        ({"completion_tokens_details__reasoning_tokens": 241}, {"completion_tokens": 241}),
        ({"prompt_tokens_details__audio_tokens": 688}, {"prompt_tokens": 688}),
    ],
)
def test_parts_larger_than_their_whole_are_reconciled_upwards(changes, raised):
    body = with_usage(record(OPENROUTER_CHAT, "test_openrouter_with_native_options.yaml").body, **changes)
    usage = chat_response_from_completion(sdk_completion(body), provider="openrouter", requested_model="x").usage
    for name, value in raised.items():
        assert getattr(usage, name) == value
    assert usage.inconsistency() is None and usage.total_tokens >= usage.prompt_tokens + usage.completion_tokens


def test_a_real_stream_reporting_more_reasoning_than_output_is_reconciled():
    """OpenRouter's usage chunk of a stream cut by "Token limit reached": 11 reasoning of 10 output tokens."""
    usage = final_chunk_usage(OPENROUTER_CHAT, "test_openrouter_stream_error.yaml")
    assert (usage.reasoning_tokens, usage.completion_tokens) == (11, 11)


def test_every_recorded_usage_parses():
    refused = []
    for file in (OPENAI_CHAT, OPENROUTER_CHAT, DD_TRACE):
        for r in load_records(file):
            if r.route != "chat/completions":
                continue
            bodies = [r.body] if r.body_kind == "json" else _chunks(r.body)
            for body in bodies:
                if isinstance(body, dict) and isinstance(body.get("usage"), dict):
                    try:
                        usage_from_sdk(body["usage"])
                    except InvalidResponse:
                        refused.append(r.source_file.rsplit("/", 1)[-1])
    assert refused == []


def _chunks(body: str) -> list[Any]:
    return [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: {")]
