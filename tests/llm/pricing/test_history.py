"""``PriceHistory``: the price sheet in force at a past instant, found by name as the live lookup finds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.llm.pricing.history import PriceHistory, PricePeriod
from apps.llm.pricing.sheets import ModelPricing

CHANGE = datetime(2026, 1, 29, 4, 4, 34, tzinfo=UTC)
START = datetime(2025, 12, 18, tzinfo=UTC)


def sheet(prompt: str, price_id: int, model_id: str = "deepseek/deepseek-r1", **fields) -> ModelPricing:
    fields = {"canonical_slug": model_id} | fields
    return ModelPricing(
        provider="openrouter", model_id=model_id, prompt=prompt, completion="0.000001", price_id=price_id, **fields
    )


OLD = sheet("0.0000003", 1)
NEW = sheet("0.0000007", 2)
HISTORY = [PricePeriod(OLD, START, CHANGE), PricePeriod(NEW, CHANGE)]


def test_the_row_in_force_at_each_instant():
    history = PriceHistory(HISTORY)
    assert history.get("deepseek/deepseek-r1", "openrouter", START - timedelta(seconds=1)) is None
    assert history.get("deepseek/deepseek-r1", "openrouter", START) is OLD
    assert history.get("deepseek/deepseek-r1", "openrouter", CHANGE - timedelta(microseconds=1)) is OLD
    # valid_to is exclusive, valid_from inclusive: at the instant of a change, the new price.
    assert history.get("deepseek/deepseek-r1", "openrouter", CHANGE) is NEW
    assert history.get("deepseek/deepseek-r1", "openrouter", CHANGE + timedelta(days=400)) is NEW


def test_names_resolve_as_for_current_prices():
    slugged = sheet("0.000003", 3, model_id="anthropic/claude-sonnet-4.5", canonical_slug="anthropic/claude-4.5-sonnet")
    history = PriceHistory([*HISTORY, PricePeriod(slugged, START)])
    # A response names the model by its canonical slug; local models cost nothing.
    assert history.get("anthropic/claude-4.5-sonnet", "openrouter", CHANGE) is slugged
    free = history.get("local/all-minilm-l6-v2", "local", CHANGE)
    assert free is not None and free.prompt == 0 and free.price_id is None


def test_a_corrected_row_replaces_its_model_at_every_time():
    corrected = sheet("0.0000005", 9)
    history = PriceHistory(HISTORY, corrected=corrected)
    for when in (START, CHANGE, CHANGE + timedelta(days=1)):
        found = history.get("deepseek/deepseek-r1", "openrouter", when)
        assert found is corrected and found.prompt == Decimal("0.0000005")
