"""Exact costs: the formula on constructed prices, and against OpenRouter's own ``usage.cost``.

The real-data check takes every recorded OpenRouter response that reports ``usage.cost``
(tests/fixtures/recorded/openrouter-chat-responses-pydantic-ai-cassettes.json), loads the catalog
snapshot closest in date to the recording into the database, and prices the recorded usage
through ``ModelsCache`` and ``calculate_cost``. Each record's expected outcome is listed in
``EXPECTED`` with the reason when our cost legitimately differs from OpenRouter's.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from apps.llm.costs import CostBreakdown, calculate_chat_cost, calculate_cost, calculate_embedding_cost
from apps.llm.errors import InvalidResponse
from apps.llm.models import ModelPrice
from apps.llm.pricing.lookup import ModelsCache
from apps.llm.pricing.sheets import ModelPricing, PriceTier, parse_openrouter_catalog
from apps.llm.pricing.store import apply_prices
from apps.llm.transport.responses import usage_from_sdk
from apps.llm.types import Usage
from tests.helpers import FIXTURES

RECORDED = FIXTURES / "recorded" / "openrouter-chat-responses-pydantic-ai-cassettes.json"

D = Decimal


def sheet(**prices: str) -> ModelPricing:
    return ModelPricing(provider="test", model_id="test/model", **prices)


# -- the formula ------------------------------------------------------------------------------------


def test_plain_prompt_and_completion():
    pricing = sheet(prompt="0.000003", completion="0.000015")
    cost = calculate_cost(pricing, Usage(prompt_tokens=550, completion_tokens=12))
    assert cost.amount("prompt") == D("0.00165") and cost.amount("completion") == D("0.00018")
    assert [line.component for line in cost.parts] == ["prompt", "completion"]  # nothing else was used
    assert cost.total == D("0.00183")
    assert isinstance(cost, CostBreakdown) and all(type(line.amount) is Decimal for line in cost.parts)
    assert type(cost.total) is Decimal


def test_every_component():
    pricing = sheet(
        prompt="0.000002",
        completion="0.00001",
        input_cache_read="0.0000002",
        input_cache_write="0.0000025",
        internal_reasoning="0.000012",
        request="0.005",
    )
    usage = Usage(
        prompt_tokens=1000, cached_tokens=600, cache_write_tokens=300, completion_tokens=500, reasoning_tokens=200
    )
    cost = calculate_cost(pricing, usage)
    assert cost.amount("prompt") == 100 * D("0.000002")
    assert cost.amount("input_cache_read") == 600 * D("0.0000002")
    assert cost.amount("input_cache_write") == 300 * D("0.0000025")
    assert cost.amount("completion") == 300 * D("0.00001")
    assert cost.amount("internal_reasoning") == 200 * D("0.000012")
    assert cost.amount("request") == D("0.005")
    assert cost.total == D("0.0002") + D("0.00012") + D("0.00075") + D("0.003") + D("0.0024") + D("0.005")
    assert cost.total == D("0.01147")


def test_missing_cache_and_reasoning_prices_fall_back():
    """No cache-read/-write price: the prompt price; no reasoning price: the completion price."""
    pricing = sheet(prompt="0.000001", completion="0.000004")
    usage = Usage(prompt_tokens=100, cached_tokens=40, cache_write_tokens=10, completion_tokens=30, reasoning_tokens=20)
    cost = calculate_cost(pricing, usage)
    assert (cost.amount("prompt"), cost.amount("input_cache_read"), cost.amount("input_cache_write")) == (
        50 * D("0.000001"),
        40 * D("0.000001"),
        10 * D("0.000001"),
    )
    assert (cost.amount("completion"), cost.amount("internal_reasoning")) == (10 * D("0.000004"), 20 * D("0.000004"))
    # Each line says which price it was charged at.
    assert {line.component: line.priced_as for line in cost.parts} == {
        "prompt": "prompt",
        "input_cache_read": "prompt",
        "input_cache_write": "prompt",
        "completion": "completion",
        "internal_reasoning": "completion",
    }
    assert cost.total == 100 * D("0.000001") + 30 * D("0.000004")


def test_tier_chosen_by_prompt_tokens():
    pricing = sheet(
        prompt="0.000003",
        completion="0.000015",
        input_cache_read="0.0000003",
        tiers=[
            PriceTier(
                min_prompt_tokens=200_000, prompt="0.000006", completion="0.0000225", input_cache_read="0.0000006"
            )
        ],
    )
    small = calculate_cost(pricing, Usage(prompt_tokens=199_999, completion_tokens=1000))
    large = calculate_cost(pricing, Usage(prompt_tokens=200_000, cached_tokens=100_000, completion_tokens=1000))
    assert small.total == 199_999 * D("0.000003") + 1000 * D("0.000015")
    assert large.total == 100_000 * D("0.000006") + 100_000 * D("0.0000006") + 1000 * D("0.0000225")
    assert large.pricing.prompt == D("0.000006") and small.pricing is pricing


def test_exact_with_many_decimal_places():
    pricing = sheet(prompt="0.00000008333333333333334", completion="0.0000000208333333333333")
    cost = calculate_cost(pricing, Usage(prompt_tokens=987_654_321, completion_tokens=123_456_789))
    # Checked in rational arithmetic, which cannot round.
    exact = 987_654_321 * Fraction("0.00000008333333333333334") + 123_456_789 * Fraction("0.0000000208333333333333")
    assert Fraction(cost.total) == exact


def test_inconsistent_usage_is_refused():
    pricing = sheet(prompt="0.000001")
    with pytest.raises(ValueError, match="exceed prompt_tokens"):
        calculate_cost(pricing, Usage(prompt_tokens=10, cached_tokens=8, cache_write_tokens=5))
    with pytest.raises(ValueError, match="exceed completion_tokens"):
        calculate_cost(pricing, Usage(completion_tokens=10, reasoning_tokens=11))
    with pytest.raises(ValueError, match="negative"):
        calculate_cost(pricing, Usage(prompt_tokens=-1))


# -- the public helpers, on the prices the migration loaded -----------------------------------------


@pytest.mark.django_db
def test_calculate_chat_cost():
    cache = ModelsCache()
    assert calculate_chat_cost("gpt-4o-mini", 1000, 500, cache, provider="openai") == D("0.00045")
    assert calculate_chat_cost("gpt-4o-mini-2024-07-18", 1000, 500, cache, provider="openai") == D("0.00045")
    assert calculate_chat_cost("openai/gpt-4o-mini", 1000, 500, cache) == D("0.00045")
    # 550 prompt tokens, 12 output; as a response names the model (canonical slug).
    slug = "anthropic/claude-4.5-sonnet-20250929"
    assert calculate_chat_cost(slug, 550, 12, cache, provider="openrouter") == D("0.00183")
    cached = calculate_chat_cost("gpt-4o", 1000, 100, cache, cached_tokens=800, provider="openai")
    assert cached == 200 * D("0.0000025") + 800 * D("0.00000125") + 100 * D("0.00001")
    reasoning = calculate_chat_cost("openai/gpt-5-mini", 17, 2177, cache, reasoning_tokens=960, provider="openrouter")
    assert reasoning == D("0.00435825")
    write = calculate_chat_cost(
        "anthropic/claude-sonnet-4.5", 5000, 10, cache, cache_write_tokens=4000, provider="openrouter"
    )
    assert write == 1000 * D("0.000003") + 4000 * D("0.00000375") + 10 * D("0.000015")


@pytest.mark.django_db
def test_unknown_model_is_none_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="apps.llm.costs"):
        assert calculate_chat_cost("acme/unknown-model", 100, 100, ModelsCache(), provider="openrouter") is None
    assert "acme/unknown-model" in caplog.text and "cost not computed" in caplog.text


@pytest.mark.django_db
def test_local_models_cost_nothing():
    assert calculate_chat_cost("local/llama", 10**6, 10**6, ModelsCache()) == 0
    assert calculate_embedding_cost("local/all-minilm-l6-v2", 10**6, ModelsCache()) == 0


@pytest.mark.django_db
def test_calculate_embedding_cost():
    cache = ModelsCache()
    assert calculate_embedding_cost("text-embedding-3-small", 1000, cache, provider="openai") == D("0.00002")
    assert calculate_embedding_cost("openai/text-embedding-3-large", 1000, cache, provider="openrouter") == D("0.00013")
    assert calculate_embedding_cost("text-embedding-ada-002-v2", 8, cache) == D("0.0000008")
    assert calculate_embedding_cost("acme/embedder", 8, cache) is None


# -- against OpenRouter's usage.cost ----------------------------------------------------------------

SNAPSHOTS = {
    datetime(2025, 12, 18, 15, 11, 29, tzinfo=UTC): "openrouter-models-2025-12-18.json",
    datetime(2026, 1, 29, 4, 4, 34, tzinfo=UTC): "openrouter-models-2026-01-29.json",
    datetime(2026, 8, 18, 20, 1, 54, tzinfo=UTC): "openrouter-models-2026-08-18.json",
}

#: Components billed as OpenRouter's prompt cost and completion cost (cost_details).
PROMPT_SIDE = {"prompt", "input_cache_read", "input_cache_write", "input_cache_write_1h", "audio", "input_audio_cache"}
PROMPT_SIDE |= {"image_token", "image"}
COMPLETION_SIDE = {"completion", "internal_reasoning", "audio_output", "image_output"}

MATCH = "match"  # our cost == usage.cost, exactly
BYOK = "byok"  # the user's own provider key: usage.cost is 0, the real cost is upstream_inference_cost
SERVER_TOOL = "server tool"  # usage.cost adds the fee of a tool OpenRouter ran (advisor, web search)
NATIVE_SEARCH = "native web search"  # the catalog's web_search price x web_search_requests, charged too
FILE_FEE = "file parsing fee"  # a PDF parsed for the model: $0.002 beyond the tokens
PRICE_DOUBLED = "price changed"  # billed at exactly twice the snapshot's prices (see below)
PROVIDER_PRICE = "provider price"  # served by a provider that charged more than the catalog lists
NOT_IN_SNAPSHOT = "not in snapshot"

# Every recorded response with usage.cost, by "<cassette>#<interaction>". Plain-text requests
# (no file, image or video input) unless the comment says otherwise.
EXPECTED = {
    "test_eager_input_streaming_sent_to_openrouter[anthropic-disabled].yaml#0": MATCH,
    "test_eager_input_streaming_sent_to_openrouter[anthropic-enabled].yaml#0": MATCH,
    "test_eager_input_streaming_sent_to_openrouter[non-anthropic-enabled].yaml#0": MATCH,
    "test_openrouter_stream_with_native_options.yaml#0": MATCH,  # x-ai/grok-4: 679 of 687 prompt tokens cached
    "test_openrouter_stream_with_reasoning.yaml#0": MATCH,
    "test_openrouter_streaming_reasoning.yaml#0": MATCH,
    "test_openrouter_thinking_false_supports_thinking_model.yaml#0": MATCH,
    "test_openrouter_thinking_high_emits_effort_high.yaml#0": MATCH,
    "test_openrouter_thinking_true_emits_effort_medium.yaml#0": MATCH,
    "test_openrouter_usage.yaml#1": MATCH,  # 960 reasoning tokens of 2177
    "test_openrouter_binary_content_video_public_api.yaml#0": MATCH,  # video input, billed as prompt tokens
    "test_openrouter_video_url_public_api.yaml#0": MATCH,  # video URL input (0 prompt tokens)
    "test_openrouter_document_url_no_force_download.yaml#0": MATCH,  # PDF URL read natively by the model
    "test_openrouter_file_annotation.yaml#0": FILE_FEE,  # PDF input
    "test_openrouter_google_nested_schema.yaml#0": BYOK,
    "test_openrouter_google_nested_schema.yaml#1": BYOK,
    "test_openrouter_advisor_tool.yaml#0": SERVER_TOOL,
    "test_openrouter_advisor_tool_stream.yaml#0": SERVER_TOOL,
    "test_openrouter_web_search_annotations.yaml#0": SERVER_TOOL,
    "test_openrouter_web_search_annotations_stream.yaml#0": SERVER_TOOL,
    "test_openrouter_web_search_tool_usage.yaml#0": NATIVE_SEARCH,
    "test_openrouter_web_search_tool_usage_stream.yaml#0": NATIVE_SEARCH,
    # Recorded 2026-08-13 and 2026-07-21; the 2026-08-18 snapshot lists google/gemini-3.6-flash
    # and openai/gpt-5.6-sol at half the per-token prices the calls were billed
    # (cost_details: 1.5e-6/7.5e-6 vs 7.5e-7/3.75e-6; 5e-6/3e-5 vs 2.5e-6/1.5e-5).
    "test_openrouter_web_search_tool_full_params.yaml#0": PRICE_DOUBLED,  # no search was run
    "test_openrouter_responses_prompt_cache_e2e.yaml#0": PRICE_DOUBLED,  # 4012 cache-write tokens
    "test_openrouter_responses_prompt_cache_e2e.yaml#1": PRICE_DOUBLED,  # 4012 cached tokens
    # z-ai/glm-4.6 served by AtlasCloud at 6e-7/2.2e-6 per token; the snapshots list 3.9e-7/1.9e-6,
    # 3.5e-7/1.5e-6 and 5e-7/2e-6 (the catalog shows one price per model, not each provider's).
    "test_openrouter_thinking_false_profile_gated_model.yaml#0": PROVIDER_PRICE,
    "test_openrouter_stream_error.yaml#0": NOT_IN_SNAPSHOT,  # minimax/minimax-m2:free, cost 0
}


@dataclass(frozen=True)
class RecordedCall:
    key: str
    recorded_at: datetime
    model: str
    #: None: the recorded usage is impossible and the client refuses it (see ``_usage``).
    usage: Usage | None
    cost: Decimal
    details: dict[str, Any]
    is_byok: bool
    server_tool_use: dict[str, Any]
    request: dict[str, Any]

    @property
    def snapshot(self) -> str:
        """The catalog snapshot closest in date to the recording."""
        closest = min(SNAPSHOTS, key=lambda taken: abs(taken - self.recorded_at))
        return SNAPSHOTS[closest]

    @property
    def input_kinds(self) -> set[str]:
        kinds = set()
        for message in self.request.get("messages") or []:
            content = message.get("content")
            kinds |= {part["type"] for part in content} if isinstance(content, list) else {"text"}
        return kinds or {"text"}


@functools.cache
def recorded_calls() -> dict[str, RecordedCall]:
    """The recorded responses that carry ``usage.cost``, numbers parsed as exact Decimals."""
    data = json.loads(RECORDED.read_text(), parse_float=Decimal)
    calls = {}
    for record in data["records"]:
        body = _final_body(record["response"])
        usage = (body or {}).get("usage") or {}
        if "cost" not in usage:
            continue
        key = f"{record['source_file'].rsplit('/', 1)[-1]}#{record['interaction_index']}"
        calls[key] = RecordedCall(
            key=key,
            recorded_at=datetime.fromisoformat(record["file_last_commit_date"]),
            model=body["model"],
            usage=_usage(usage),
            cost=Decimal(usage["cost"]),
            details=usage.get("cost_details") or {},
            is_byok=bool(usage.get("is_byok")),
            server_tool_use=usage.get("server_tool_use_details") or {},
            request=record["request"]["body"],
        )
    return calls


def _final_body(response: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON body, or for a stream the last chunk with usage (plus the model it names)."""
    if response["body_kind"] == "json":
        return response["body"]
    final = None
    for line in response["body"].splitlines():
        if line.startswith("data: {"):
            chunk = json.loads(line.removeprefix("data: "), parse_float=Decimal)
            if chunk.get("usage"):
                final = chunk
    return final


#: The Responses API's names for the Chat Completions usage fields the parser reads.
_RESPONSES_NAMES = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "input_tokens_details": "prompt_tokens_details",
    "output_tokens_details": "completion_tokens_details",
}


def _usage(usage: dict[str, Any]) -> Usage | None:
    """The usage as the client parses it (``usage_from_sdk``), Responses API names mapped to chat ones.

    ``None`` when the parser refuses it: one recorded stream (cut by "Token limit reached")
    reports 11 reasoning tokens of 10 completion tokens.
    """
    try:
        return usage_from_sdk({_RESPONSES_NAMES.get(key, key): value for key, value in usage.items()})
    except InvalidResponse:
        return None


@functools.cache
def snapshot_pricings(name: str) -> list[ModelPricing]:
    payload = json.loads((FIXTURES / "pricing" / name).read_text())
    return parse_openrouter_catalog(payload, source=name, fetched_at=None).accepted


def cache_for_snapshot(name: str) -> ModelsCache:
    """A ModelsCache whose OpenRouter prices are exactly those of the snapshot ``name``."""
    ModelPrice.objects.filter(provider="openrouter").delete()
    apply_prices(ModelPrice, snapshot_pricings(name))
    return ModelsCache()


def test_every_recorded_cost_is_classified():
    assert set(recorded_calls()) == set(EXPECTED)
    # Every recorded usage is read: the one whose parts exceed their whole is reconciled upwards.
    assert all(call.usage is not None for call in recorded_calls().values())
    plain_text = {k for k, call in recorded_calls().items() if call.input_kinds == {"text"}}
    assert len(plain_text) == 23
    assert sum(1 for k in plain_text if EXPECTED[k] == MATCH) == 10


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_cost_equals_openrouter_usage_cost(key):
    call = recorded_calls()[key]
    outcome = EXPECTED[key]
    cache = cache_for_snapshot(call.snapshot)
    pricing = cache.get(call.model, "openrouter")
    if outcome == NOT_IN_SNAPSHOT:
        assert pricing is None and call.cost == 0
        assert calculate_chat_cost(call.model, 1, 1, cache, provider="openrouter") is None
        return
    assert pricing is not None, f"{call.model} not found in {call.snapshot}"
    assert call.usage is not None
    ours = calculate_cost(pricing, call.usage)
    prompt_part = sum((line.amount for line in ours.parts if line.component in PROMPT_SIDE), Decimal(0))
    completion_part = sum((line.amount for line in ours.parts if line.component in COMPLETION_SIDE), Decimal(0))
    assert prompt_part + completion_part + ours.amount("web_search") + ours.amount("request") == ours.total

    if outcome == MATCH:
        assert ours.total == call.cost
        # The split agrees too, where OpenRouter reports it.
        assert prompt_part == Decimal(call.details["upstream_inference_prompt_cost"])
        assert completion_part == Decimal(call.details["upstream_inference_completions_cost"])
        # And the public helper, given what a response carries, says the same.
        u = call.usage
        helper_cost = calculate_chat_cost(
            call.model,
            u.prompt_tokens,
            u.completion_tokens,
            cache,
            cached_tokens=u.cached_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
            provider="openrouter",
        )
        assert helper_cost == call.cost
    elif outcome == BYOK:
        assert call.is_byok and call.cost == 0
        assert ours.total == call.details["upstream_inference_cost"]
    elif outcome == SERVER_TOOL:
        assert call.server_tool_use and ours.total < call.cost
        assert ours.total == call.details["upstream_inference_cost"]
        # OpenRouter's own search plugin is not a price of the model: the model's search price
        # (none, for these) is what we can charge, and the line shows the search was seen.
        assert ours.amount("web_search") == 0
        assert ours.quantity("web_search") == call.server_tool_use.get("web_search_requests", 0)
    elif outcome == NATIVE_SEARCH:
        # The model's own search, priced in the catalog: charged, and the totals agree exactly.
        searches = call.server_tool_use["web_search_requests"]
        assert searches == 1 and pricing.web_search == D("0.01")
        assert call.usage.web_search_requests == searches
        assert ours.amount("web_search") == searches * D("0.01")
        assert ours.total == call.cost == call.details["upstream_inference_cost"]
    elif outcome == FILE_FEE:
        assert "file" in call.input_kinds and call.details["upstream_inference_cost"] is None
        assert prompt_part == call.details["upstream_inference_prompt_cost"]
        assert completion_part == call.details["upstream_inference_completions_cost"]
        assert call.cost - ours.total == D("0.002")
    elif outcome == PRICE_DOUBLED:
        assert call.snapshot == "openrouter-models-2026-08-18.json"
        assert call.cost == 2 * ours.total
    elif outcome == PROVIDER_PRICE:
        assert ours.total != call.cost
        billed_prompt_price = Decimal(call.details["upstream_inference_prompt_cost"]) / call.usage.prompt_tokens
        assert billed_prompt_price == D("0.0000006")
        assert all(snapshot_price(name, call.model) != billed_prompt_price for name in SNAPSHOTS.values())
    else:  # pragma: no cover
        pytest.fail(f"unknown outcome {outcome}")


def snapshot_price(name: str, model_id: str) -> Decimal:
    return next(p.prompt for p in snapshot_pricings(name) if p.model_id == model_id)
