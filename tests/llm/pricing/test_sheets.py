"""Price catalogs -> ``ModelPricing`` (apps/llm/pricing/sheets.py), on real data.

The catalogs are real OpenRouter snapshots in three formats (tests/fixtures/pricing/SOURCES.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from apps.llm.pricing.sheets import (
    PRICE_COMPONENTS,
    ModelPricing,
    PriceTier,
    parse_openrouter_catalog,
    parse_price_table,
)
from apps.llm.pricing.store import DATA_DIR
from tests.llm.pricing.catalogs import AUG_2026, DEC_2025, EMBEDDINGS, FETCHED, JAN_2026, parse, parsed, raw_catalog

ROUTERS_2025 = {"openrouter/auto", "openrouter/bodybuilder"}
ROUTERS_2026_08 = ROUTERS_2025 | {"openrouter/auto-beta", "openrouter/fusion", "openrouter/pareto-code"}


def entry(model_id: str = "test/model", **pricing) -> dict:
    return {"id": model_id, "name": model_id, "context_length": 1000, "pricing": pricing}


# -- the parser on real catalogs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "total", "rejected"),
    [
        (DEC_2025, 349, ROUTERS_2025),
        (JAN_2026, 347, ROUTERS_2025),
        (AUG_2026, 414, ROUTERS_2026_08),
        (EMBEDDINGS, 21, set()),
    ],
)
def test_parses_every_catalog_format(name, total, rejected):
    result = parse(name)
    assert len(raw_catalog(name)["data"]) == total
    assert len(result.accepted) == total - len(rejected)
    assert {r.model_id for r in result.rejected} == rejected
    # The routers' "-1" means "whatever the chosen model costs": not a price we can use.
    assert all("-1" in r.reason and "variable price" in r.reason for r in result.rejected)
    assert all(p.provider == "openrouter" and p.source == name and p.fetched_at == FETCHED for p in result.accepted)


@pytest.mark.parametrize("name", [DEC_2025, JAN_2026, AUG_2026, EMBEDDINGS])
def test_every_price_is_the_catalog_string_exactly(name):
    """Each price is Decimal(the catalog's string), component by component, tiers and extras too."""
    models = parsed(name)
    checked = 0
    for raw in raw_catalog(name)["data"]:
        if raw["id"] not in models:
            continue
        pricing = models[raw["id"]]
        for key, text in raw["pricing"].items():
            if key == "overrides":
                for tier, raw_tier in zip(pricing.tiers, text, strict=True):
                    assert tier.to_catalog() == {k: v if isinstance(v, int) else _plain(v) for k, v in raw_tier.items()}
                continue
            value = getattr(pricing, key) if key in PRICE_COMPONENTS else pricing.extra_prices[key]
            assert type(value) is Decimal and value == Decimal(text), (raw["id"], key)
            checked += 1
        for component in PRICE_COMPONENTS:
            if component not in raw["pricing"]:
                assert getattr(pricing, component) == 0  # a missing key means 0
    assert checked > 2 * len(models)


def _plain(text: str) -> str:
    return format(Decimal(text), "f")


def test_float_printed_prices_keep_every_digit():
    jan = parsed(JAN_2026)["google/gemini-3-flash-preview"]
    assert jan.input_cache_write == Decimal("0.00000008333333333333334")
    assert jan.input_cache_write != Decimal(8.333333333333334e-8)  # noqa: RUF032 (what a float detour would give)
    aug = parsed(AUG_2026)["google/gemini-3.7-flash"]
    assert str(aug.input_cache_write) == "2.08333333333333E-8"


def test_missing_key_means_zero_across_formats():
    """deepseek-chat lists request/image/web_search/internal_reasoning as "0" in 2025, omits them in 2026."""
    old, new = parsed(DEC_2025)["deepseek/deepseek-chat"], parsed(JAN_2026)["deepseek/deepseek-chat"]
    assert set(raw_pricing(DEC_2025, "deepseek/deepseek-chat")) > set(raw_pricing(JAN_2026, "deepseek/deepseek-chat"))
    for component in PRICE_COMPONENTS:
        assert getattr(old, component) == getattr(new, component)
    assert new.request == new.image == new.internal_reasoning == new.web_search == Decimal(0)


def raw_pricing(name: str, model_id: str) -> dict:
    return next(m["pricing"] for m in raw_catalog(name)["data"] if m["id"] == model_id)


def test_new_price_keys_are_kept_as_extra_prices():
    models = parsed(AUG_2026)
    extra_keys = {key for p in models.values() for key in p.extra_prices}
    assert extra_keys == {"audio", "input_audio_cache", "input_cache_write_1h", "image_output", "audio_output"}
    assert models["anthropic/claude-sonnet-4.5"].extra_prices == {"input_cache_write_1h": Decimal("0.000006")}
    assert models["openai/gpt-audio"].extra_prices == {
        "audio": Decimal("0.000032"),
        "audio_output": Decimal("0.000064"),
    }
    assert models["google/gemini-3-pro-image"].extra_prices["image_output"] == Decimal("0.00012")
    # A key not seen in any snapshot yet (the 2026-08 API documents image_token) is stored too.
    payload = {"data": [entry(prompt="0.000001", completion="0.000002", image_token="0.00000003")]}
    result = parse_openrouter_catalog(payload, source="t", fetched_at=None)
    assert result.accepted[0].extra_prices == {"image_token": Decimal("0.00000003")}


def test_overrides_tiers_apply_by_prompt_size():
    models = parsed(AUG_2026)
    assert sum(1 for p in models.values() if p.tiers) == 61
    sonnet = models["anthropic/claude-sonnet-4.5"]
    assert sonnet.tiers == [
        PriceTier(
            min_prompt_tokens=200000,
            prompt="0.000006",
            completion="0.0000225",
            input_cache_read="0.0000006",
            input_cache_write="0.0000075",
            extra_prices={"input_cache_write_1h": "0.000012"},
        )
    ]
    assert sonnet.for_prompt_tokens(199_999) is sonnet
    large = sonnet.for_prompt_tokens(200_000)
    assert (large.prompt, large.completion, large.input_cache_read, large.input_cache_write) == (
        Decimal("0.000006"),
        Decimal("0.0000225"),
        Decimal("0.0000006"),
        Decimal("0.0000075"),
    )
    assert large.extra_prices == {"input_cache_write_1h": Decimal("0.000012")}
    assert large.web_search == sonnet.web_search and large.tiers == []

    qwen = models["qwen/qwen3-max"]  # two tiers: the highest one reached applies
    prompt_prices = [qwen.for_prompt_tokens(n).prompt for n in (31_999, 32_000, 127_999, 128_000, 10**6)]
    assert prompt_prices == [Decimal(p) for p in ("0.00000078", "0.00000156", "0.00000156", "0.00000195", "0.00000195")]
    assert qwen.for_prompt_tokens(128_000).input_cache_write == Decimal("0.0000024375")


def test_reasoning_follows_the_tier_output_price():
    # gemini-2.5-pro lists internal_reasoning = completion; its >=200K tier restates only completion.
    pro = parsed(AUG_2026)["google/gemini-2.5-pro"]
    assert pro.internal_reasoning == pro.completion == Decimal("0.00001")
    assert pro.for_prompt_tokens(200_000).internal_reasoning == Decimal("0.000015")


def test_time_of_day_tiers_are_stored_not_applied():
    v4 = parsed(AUG_2026)["deepseek/deepseek-v4-pro"]
    assert [(t.utc_start, t.utc_end) for t in v4.tiers] == [(1000, 100), (100, 400), (400, 600), (600, 1000)]
    assert v4.for_prompt_tokens(10**6) is v4


def test_every_output_modality_is_stored():
    for name in (DEC_2025, JAN_2026, AUG_2026, EMBEDDINGS):
        models = parsed(name)
        for raw in raw_catalog(name)["data"]:
            if raw["id"] in models:
                pricing = models[raw["id"]]
                assert pricing.output_modalities == raw["architecture"]["output_modalities"]
                assert pricing.input_modalities == raw["architecture"]["input_modalities"]
                assert pricing.modality == raw["architecture"]["modality"]
    assert {m for p in parsed(AUG_2026).values() for m in p.output_modalities} == {"text", "image", "audio"}
    assert {m for p in parsed(EMBEDDINGS).values() for m in p.output_modalities} == {"embeddings"}


def test_embeddings_catalog():
    models = parsed(EMBEDDINGS)
    small = models["openai/text-embedding-3-small"]
    assert (small.prompt, small.completion, small.modality) == (Decimal("0.00000002"), 0, "text->embeddings")
    assert models["openai/text-embedding-3-large"].prompt == Decimal("0.00000013")
    assert models["qwen/qwen3-embedding-8b"].prompt == Decimal("0.00000001")


# -- the parser on bad data ------------------------------------------------------------------------


def test_invalid_entries_are_rejected_with_reasons():
    good = entry("good/model", prompt="0.000001", completion="0.000002")
    payload = {
        "data": [
            good,
            entry("router/auto", prompt="-1", completion="-1"),
            entry("neg/model", prompt="-0.000001", completion="0.000002"),
            entry("huge/per-million", prompt="3", completion="15"),
            entry("huge/request", prompt="0", completion="0", request="250"),
            entry("float/model", prompt=0.000001, completion="0.000002"),
            entry("text/model", prompt="free", completion="0"),
            entry("nan/model", prompt="NaN", completion="0"),
            entry("precise/model", prompt="0.0000000000000000000000001", completion="0"),
            entry("tier/no-condition", prompt="0.000001", completion="0.000002", overrides=[{"prompt": "0.000002"}]),
            entry(
                "tier/bad-price",
                prompt="0.000001",
                completion="0.000002",
                overrides=[{"min_prompt_tokens": 1000, "prompt": "-1"}],
            ),
            entry("extra/bad", prompt="0.000001", completion="0.000002", input_cache_write_1h="-5"),
            {"name": "no id", "pricing": {"prompt": "0"}},
            {"id": "no/pricing"},
            "not an object",
            dict(good),
        ]
    }
    result = parse_openrouter_catalog(payload, source="test", fetched_at=None)
    assert [p.model_id for p in result.accepted] == ["good/model"]
    reasons = dict(result.rejected)
    expected = {
        "router/auto": "variable price",
        "neg/model": "negative price",
        "huge/per-million": "above the sanity limit of 0.01",
        "huge/request": "above the sanity limit of 100",
        "float/model": "got float",
        "text/model": "not a number",
        "nan/model": "not a finite number",
        "precise/model": "more than 24 decimal places",
        "tier/no-condition": "needs min_prompt_tokens",
        "tier/bad-price": "pricing.overrides[0]: prompt: -1",
        "extra/bad": "input_cache_write_1h: negative price",
        "<entry 12>": "id",
        "no/pricing": "pricing",
        "<entry 14>": "valid dictionary",
        "good/model": "duplicate id",
    }
    assert reasons.keys() == expected.keys()
    for model_id, fragment in expected.items():
        assert fragment in reasons[model_id], (model_id, reasons[model_id])


def test_a_payload_that_is_not_a_catalog_raises():
    with pytest.raises(ValueError, match="not an OpenRouter catalog"):
        parse_openrouter_catalog({"error": {"code": 500}}, source="t", fetched_at=None)


def test_parse_keeps_decimals_from_json_parsed_with_parse_float():
    payload = json.loads(
        '{"data": [{"id": "a/b", "pricing": {"prompt": 0.0000003, "completion": "0"}}]}', parse_float=Decimal
    )
    assert parse_openrouter_catalog(payload, source="t", fetched_at=None).accepted[0].prompt == Decimal("0.0000003")


def test_fetched_at_must_be_aware():
    with pytest.raises(ValueError):
        ModelPricing(provider="openrouter", model_id="a/b", fetched_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_openrouter_catalog(raw_catalog(EMBEDDINGS), source="t", fetched_at=datetime(2026, 1, 1))


# -- the bundled OpenAI table ------------------------------------------------------------------------


def test_openai_table():
    table = json.loads((DATA_DIR / "openai-prices.json").read_text())
    assert "litellm==1.110.2" in table["source"] and table["as_of"] == "2026-11-26"
    result = parse_price_table(table, provider="openai", source="t", fetched_at=FETCHED)
    assert result.rejected == []
    models = {p.model_id: p for p in result.accepted}
    required = {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-3.5-turbo",
        "gpt-4",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    }
    assert required <= models.keys()
    gpt4o = models["gpt-4o"]
    assert (gpt4o.prompt, gpt4o.completion, gpt4o.input_cache_read) == (
        Decimal("0.0000025"),
        Decimal("0.00001"),
        Decimal("0.00000125"),
    )
    assert models["gpt-5-mini"].input_cache_read == Decimal("0.000000025")
    assert models["text-embedding-3-small"].prompt == Decimal("0.00000002")
    # OpenAI's long-context price applies above 272K prompt tokens.
    gpt54 = models["gpt-5.4"]
    assert gpt54.for_prompt_tokens(272_000).prompt == Decimal("0.0000025")
    assert gpt54.for_prompt_tokens(272_001).prompt == Decimal("0.000005")


def test_price_table_rejects_bad_rows():
    table = {"models": {"ok": {"prompt": "0.000001"}, "typo": {"promt": "0.000001"}, "neg": {"prompt": "-1"}}}
    result = parse_price_table(table, provider="openai", source="t", fetched_at=None)
    assert [p.model_id for p in result.accepted] == ["ok"]
    assert {r.model_id for r in result.rejected} == {"typo", "neg"}
