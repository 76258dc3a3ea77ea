"""Every price component charged, each on a real catalog entry that prices it.

The price sheets are the real OpenRouter snapshots of tests/fixtures/pricing, parsed as the
pricing sync parses them. Each expected amount is computed here independently: the quantity
times the price string read straight from the catalog's JSON, never from our parser.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from apps.llm.costs import CostBreakdown, calculate_cost, count_input_images, usage_with_request
from apps.llm.transport.responses import usage_from_sdk
from apps.llm.types import Usage
from tests.llm.pricing.catalogs import AUG_2026, JAN_2026, parsed, raw_catalog


def catalog_price(catalog: str, model_id: str, key: str, *, tier: int | None = None) -> Decimal:
    """A price exactly as the catalog's JSON writes it (optionally from a tier of ``overrides``)."""
    entry = next(m for m in raw_catalog(catalog)["data"] if m["id"] == model_id)
    prices = entry["pricing"] if tier is None else entry["pricing"]["overrides"][tier]
    return Decimal(prices[key])


def cost(catalog: str, model_id: str, usage: Usage) -> CostBreakdown:
    return calculate_cost(parsed(catalog)[model_id], usage)


def line(breakdown: CostBreakdown, component: str) -> dict[str, str]:
    (found,) = [item for item in breakdown.lines() if item["component"] == component]
    return found


def text(message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": message, **extra}


def image(url: str = "https://example.com/cat.png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


SONNET = "anthropic/claude-sonnet-4.5"  # 2026-08: cache reads, 5-minute and 1-hour writes, a >200K tier


def test_input_and_output():
    breakdown = cost(AUG_2026, SONNET, Usage(prompt_tokens=1200, completion_tokens=300))
    prompt, completion = catalog_price(AUG_2026, SONNET, "prompt"), catalog_price(AUG_2026, SONNET, "completion")
    assert breakdown.amount("prompt") == 1200 * prompt
    assert breakdown.amount("completion") == 300 * completion
    assert breakdown.total == 1200 * prompt + 300 * completion == Decimal("0.0081")


def test_cached_input_read():
    breakdown = cost(AUG_2026, SONNET, Usage(prompt_tokens=10_000, cached_tokens=8000, completion_tokens=100))
    read = catalog_price(AUG_2026, SONNET, "input_cache_read")
    assert breakdown.amount("input_cache_read") == 8000 * read
    assert breakdown.total == 2000 * catalog_price(AUG_2026, SONNET, "prompt") + 8000 * read + 100 * catalog_price(
        AUG_2026, SONNET, "completion"
    )


def test_cache_write_five_minutes():
    """Writes requested with the default time to live are charged at the 5-minute rate."""
    messages = [{"role": "system", "content": [text("A long manual...", cache_control={"type": "ephemeral"})]}]
    usage = usage_with_request(Usage(prompt_tokens=5000, cache_write_tokens=4000, completion_tokens=10), messages)
    assert usage.cache_write_1h_tokens == 0
    breakdown = cost(AUG_2026, SONNET, usage)
    write = catalog_price(AUG_2026, SONNET, "input_cache_write")
    assert write == Decimal("0.00000375")
    assert line(breakdown, "input_cache_write") == {
        "component": "input_cache_write",
        "quantity": "4000",
        "unit": "token",
        "unit_price": "0.00000375",
        "priced_as": "input_cache_write",
        "amount": "0.015",
    }
    assert breakdown.total == 1000 * catalog_price(AUG_2026, SONNET, "prompt") + 4000 * write + 10 * catalog_price(
        AUG_2026, SONNET, "completion"
    )


def test_cache_write_one_hour():
    """A request marking ``ttl: 1h`` pays the catalog's ``input_cache_write_1h``, not the 5-minute rate."""
    messages = [
        {"role": "system", "content": [text("A long manual...", cache_control={"type": "ephemeral", "ttl": "1h"})]},
        {"role": "user", "content": "What does chapter 2 say?"},
    ]
    usage = usage_with_request(Usage(prompt_tokens=5000, cache_write_tokens=4000, completion_tokens=10), messages)
    assert usage.cache_write_1h_tokens == 4000
    breakdown = cost(AUG_2026, SONNET, usage)
    write_1h = catalog_price(AUG_2026, SONNET, "input_cache_write_1h")
    assert write_1h == Decimal("0.000006") != catalog_price(AUG_2026, SONNET, "input_cache_write")
    assert breakdown.amount("input_cache_write_1h") == 4000 * write_1h
    assert breakdown.quantity("input_cache_write") == 0
    assert line(breakdown, "input_cache_write_1h")["priced_as"] == "input_cache_write_1h"
    assert breakdown.total == 1000 * catalog_price(AUG_2026, SONNET, "prompt") + 4000 * write_1h + 10 * catalog_price(
        AUG_2026, SONNET, "completion"
    )


def test_cache_write_one_hour_in_the_long_context_tier():
    """From 200K prompt tokens the tier's prices apply, its 1-hour write price included."""
    overrides = next(m for m in raw_catalog(AUG_2026)["data"] if m["id"] == SONNET)["pricing"]["overrides"]
    assert overrides[0]["min_prompt_tokens"] == 200_000
    usage = Usage(prompt_tokens=250_000, cache_write_tokens=240_000, cache_write_1h_tokens=240_000)
    breakdown = cost(AUG_2026, SONNET, usage)
    write_1h = catalog_price(AUG_2026, SONNET, "input_cache_write_1h", tier=0)
    assert write_1h == Decimal("0.000012")
    assert breakdown.amount("input_cache_write_1h") == 240_000 * write_1h
    assert breakdown.amount("prompt") == 10_000 * catalog_price(AUG_2026, SONNET, "prompt", tier=0)


def test_reasoning_at_its_own_price():
    model = "perplexity/sonar-deep-research"  # reasoning $3/M, output $8/M
    breakdown = cost(AUG_2026, model, Usage(prompt_tokens=100, completion_tokens=1000, reasoning_tokens=700))
    reasoning = catalog_price(AUG_2026, model, "internal_reasoning")
    assert reasoning != catalog_price(AUG_2026, model, "completion")
    assert breakdown.amount("internal_reasoning") == 700 * reasoning
    assert breakdown.amount("completion") == 300 * catalog_price(AUG_2026, model, "completion")


def test_per_request_fee():
    model = "perplexity/sonar"
    breakdown = cost(JAN_2026, model, Usage(prompt_tokens=20, completion_tokens=30))
    fee = catalog_price(JAN_2026, model, "request")
    assert fee == Decimal("0.005")
    assert line(breakdown, "request") == {
        "component": "request",
        "quantity": "1",
        "unit": "request",
        "unit_price": "0.005",
        "priced_as": "request",
        "amount": "0.005",
    }
    assert breakdown.total == 20 * catalog_price(JAN_2026, model, "prompt") + 30 * catalog_price(
        JAN_2026, model, "completion"
    ) + Decimal("0.005")


def test_input_images_per_image():
    """Two images in the request, at the catalog's price per input image."""
    model = "qwen/qwen-vl-max"  # 2026-01: image $0.001024 per image
    messages = [{"role": "user", "content": [text("Compare these"), image(), image("data:image/png;base64,AAAA")]}]
    usage = usage_with_request(Usage(prompt_tokens=2600, completion_tokens=40), messages)
    assert usage.input_images == 2
    breakdown = cost(JAN_2026, model, usage)
    per_image = catalog_price(JAN_2026, model, "image")
    assert line(breakdown, "image") == {
        "component": "image",
        "quantity": "2",
        "unit": "image",
        "unit_price": "0.001024",
        "priced_as": "image",
        "amount": "0.002048",
    }
    assert (
        breakdown.total
        == 2600 * catalog_price(JAN_2026, model, "prompt")
        + 40 * catalog_price(JAN_2026, model, "completion")
        + 2 * per_image
    )


def test_image_input_tokens():
    """Image tokens the provider reports: at ``image_token`` when listed, else as prompt tokens.

    No snapshot lists ``image_token`` yet (OpenRouter documents it as the price per image
    token), so the listed case adds it to a real sheet.
    """
    model = "google/gemini-2.5-flash"
    usage = Usage(prompt_tokens=1300, image_tokens=1290, completion_tokens=10)
    breakdown = cost(AUG_2026, model, usage)
    prompt = catalog_price(AUG_2026, model, "prompt")
    assert line(breakdown, "image_token")["priced_as"] == "prompt"
    assert breakdown.amount("image_token") == 1290 * prompt and breakdown.amount("prompt") == 10 * prompt

    listed = parsed(AUG_2026)[model].model_copy(update={"extra_prices": {"image_token": Decimal("0.0000005")}})
    assert calculate_cost(listed, usage).amount("image_token") == 1290 * Decimal("0.0000005")


def test_image_output_tokens():
    model = "google/gemini-2.5-flash-image"  # generated images $30/M tokens, text $2.50/M
    usage = usage_from_sdk(
        {"prompt_tokens": 12, "completion_tokens": 1310, "completion_tokens_details": {"image_tokens": 1290}}
    )
    breakdown = cost(AUG_2026, model, usage)
    image_output = catalog_price(AUG_2026, model, "image_output")
    assert breakdown.amount("image_output") == 1290 * image_output == Decimal("0.0387")
    assert breakdown.amount("completion") == 20 * catalog_price(AUG_2026, model, "completion")
    assert (
        breakdown.total
        == 12 * catalog_price(AUG_2026, model, "prompt")
        + 20 * catalog_price(AUG_2026, model, "completion")
        + 1290 * image_output
    )


def test_web_search_per_search():
    model = "openai/gpt-4.1-mini"
    usage = usage_from_sdk(
        {"prompt_tokens": 8174, "completion_tokens": 30, "server_tool_use_details": {"web_search_requests": 2}}
    )
    breakdown = cost(AUG_2026, model, usage)
    search = catalog_price(AUG_2026, model, "web_search")
    assert line(breakdown, "web_search") == {
        "component": "web_search",
        "quantity": "2",
        "unit": "search",
        "unit_price": "0.01",
        "priced_as": "web_search",
        "amount": "0.02",
    }
    assert (
        breakdown.total
        == 8174 * catalog_price(AUG_2026, model, "prompt")
        + 30 * catalog_price(AUG_2026, model, "completion")
        + 2 * search
    )


def test_audio_input_and_output():
    model = "openai/gpt-audio"  # audio in $32/M, audio out $64/M, text $2.50/M and $10/M
    usage = usage_from_sdk(
        {
            "prompt_tokens": 64,
            "completion_tokens": 90,
            "prompt_tokens_details": {"audio_tokens": 44, "text_tokens": 20},
            "completion_tokens_details": {"audio_tokens": 72, "text_tokens": 18},
        }
    )
    breakdown = cost(AUG_2026, model, usage)
    audio_in, audio_out = catalog_price(AUG_2026, model, "audio"), catalog_price(AUG_2026, model, "audio_output")
    assert breakdown.amount("audio") == 44 * audio_in
    assert breakdown.amount("audio_output") == 72 * audio_out
    assert breakdown.total == (
        20 * catalog_price(AUG_2026, model, "prompt")
        + 44 * audio_in
        + 18 * catalog_price(AUG_2026, model, "completion")
        + 72 * audio_out
    )


def test_cached_audio_input():
    model = "google/gemini-2.5-flash"  # audio $1/M, cached audio $0.10/M, cached text $0.03/M
    usage = Usage(prompt_tokens=1000, cached_tokens=600, audio_tokens=500, cached_audio_tokens=400)
    breakdown = cost(AUG_2026, model, usage)
    assert breakdown.amount("input_audio_cache") == 400 * catalog_price(AUG_2026, model, "input_audio_cache")
    assert breakdown.amount("input_cache_read") == 200 * catalog_price(AUG_2026, model, "input_cache_read")
    assert breakdown.amount("audio") == 100 * catalog_price(AUG_2026, model, "audio")
    assert breakdown.amount("prompt") == 300 * catalog_price(AUG_2026, model, "prompt")
    assert sum(breakdown.quantity(c) for c in ("prompt", "input_cache_read", "audio", "input_audio_cache")) == 1000


def test_every_component_of_one_call():
    """All components at once: each token counted once, the total the sum of the lines."""
    model = "google/gemini-3-pro-image"  # prices image tokens out, audio, cache, search
    usage = Usage(
        prompt_tokens=10_000,
        cached_tokens=4000,
        cached_audio_tokens=1000,
        cache_write_tokens=2000,
        audio_tokens=1500,
        image_tokens=500,
        input_images=1,
        completion_tokens=3000,
        reasoning_tokens=1000,
        output_image_tokens=1120,
        web_search_requests=1,
    )
    breakdown = cost(AUG_2026, model, usage)
    p = {
        key: catalog_price(AUG_2026, model, key)
        for key in next(m["pricing"] for m in raw_catalog(AUG_2026)["data"] if m["id"] == model)
    }
    uncached = 10_000 - 4000 - 2000
    expected = {
        "prompt": (uncached - 500 - 500) * p["prompt"],
        "input_cache_read": 3000 * p["input_cache_read"],
        "input_cache_write": 2000 * p["input_cache_write"],
        "audio": 500 * p["audio"],
        "input_audio_cache": 1000 * p["input_audio_cache"],
        "image_token": 500 * p["prompt"],  # no image_token price: a prompt token
        "image": 1 * p["image"],
        "completion": (3000 - 1000 - 1120) * p["completion"],
        "internal_reasoning": 1000 * p["internal_reasoning"],
        "image_output": 1120 * p["image_output"],
        "web_search": 1 * p["web_search"],
    }
    assert {item.component: item.amount for item in breakdown.parts} == expected
    assert breakdown.total == sum(expected.values())
    # JSON lines: exact decimal strings, never an exponent.
    lines = breakdown.lines()
    assert json.loads(json.dumps(lines)) == lines
    assert all("E" not in item["amount"] and "E" not in item["unit_price"] for item in lines)
    assert sum(Decimal(item["amount"]) for item in lines) == breakdown.total


def test_lines_are_exact_text_without_exponent():
    model = "google/gemini-3.7-flash"  # input_cache_write 0.0000000208333333333333
    breakdown = cost(AUG_2026, model, Usage(prompt_tokens=3, cache_write_tokens=3, completion_tokens=1))
    assert line(breakdown, "input_cache_write") == {
        "component": "input_cache_write",
        "quantity": "3",
        "unit": "token",
        "unit_price": "0.0000000208333333333333",
        "priced_as": "input_cache_write",
        "amount": "0.0000000624999999999999",
    }


# -- what the request shows ---------------------------------------------------------------------------


def test_usage_with_request_counts_images_and_keeps_reported_counts():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [text("a"), image(), image()]},
        {"role": "assistant", "content": "Two cats."},
        {"role": "user", "content": [image(), {"type": "input_image", "image_url": "https://example.com/d.png"}]},
    ]
    assert count_input_images(messages) == 4
    assert usage_with_request(Usage(prompt_tokens=10), messages).input_images == 4
    # A count the provider reported is not replaced.
    assert usage_with_request(Usage(prompt_tokens=10, input_images=1), messages).input_images == 1
    plain = Usage(prompt_tokens=10)
    assert usage_with_request(plain, [{"role": "user", "content": "hi"}]) is plain


@pytest.mark.parametrize(
    ("messages", "params", "one_hour"),
    [
        # Anthropic-style marks on parts, through OpenRouter.
        ([{"role": "user", "content": [text("x", cache_control={"type": "ephemeral", "ttl": "1h"})]}], None, True),
        ([{"role": "user", "content": [text("x", cache_control={"type": "ephemeral", "ttl": "5m"})]}], None, False),
        ([{"role": "user", "content": [text("x", cache_control={"type": "ephemeral"})]}], None, False),
        # On a tool definition, or OpenRouter's top-level automatic caching (also via extra_body).
        ([{"role": "user", "content": "x"}], {"tools": [{"type": "function", "cache_control": {"ttl": "1h"}}]}, True),
        ([{"role": "user", "content": "x"}], {"cache_control": {"type": "ephemeral", "ttl": "1h"}}, True),
        (
            [{"role": "user", "content": "x"}],
            {"extra_body": {"cache_control": {"type": "ephemeral", "ttl": "1h"}}},
            True,
        ),
        # Mixed: every write at the 1-hour rate (an upper bound; see usage_with_request).
        (
            [
                {"role": "system", "content": [text("x", cache_control={"type": "ephemeral", "ttl": "1h"})]},
                {"role": "user", "content": [text("y", cache_control={"type": "ephemeral"})]},
            ],
            None,
            True,
        ),
        ([{"role": "user", "content": "no marks"}], None, False),
    ],
)
def test_usage_with_request_one_hour_cache_writes(messages, params, one_hour):
    usage = usage_with_request(Usage(prompt_tokens=100, cache_write_tokens=80), messages, params)
    assert usage.cache_write_1h_tokens == (80 if one_hour else 0)
    assert usage.inconsistency() is None


def test_no_cache_writes_no_one_hour_writes():
    marked = [{"role": "user", "content": [text("x", cache_control={"type": "ephemeral", "ttl": "1h"})]}]
    assert usage_with_request(Usage(prompt_tokens=100, cached_tokens=80), marked).cache_write_1h_tokens == 0


def test_usage_parts_checked_in_full():
    """``Usage``'s quick consistency check agrees with ``USAGE_PARTS`` on every split, both ways."""
    from apps.llm.types import USAGE_COUNTS, USAGE_PARTS

    for whole, parts in USAGE_PARTS:
        for part in parts:
            # A part one above its whole, everything else consistent around them.
            counts = dict.fromkeys(USAGE_COUNTS, 0) | {whole: 5, part: 6}
            counts["prompt_tokens"] = max(counts["prompt_tokens"], 6 if whole != "prompt_tokens" else 5)
            counts["completion_tokens"] = max(counts["completion_tokens"], 0)
            counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"] + 6
            usage = Usage.model_construct(**counts)
            assert usage.inconsistency() is not None, (whole, part)
            assert usage.reconciled().inconsistency() is None
    for name in USAGE_COUNTS:
        assert Usage.model_construct(**{name: -1}).inconsistency() == f"{name} is negative (-1)"
    low_total = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=5)
    assert low_total.inconsistency() is None  # a low total is raised, never refused
    assert low_total.reconciled().total_tokens == 7
    consistent = Usage(prompt_tokens=10, cached_tokens=4, cache_write_tokens=6, completion_tokens=3, total_tokens=13)
    assert consistent.reconciled() is consistent
