"""Price rows (apps/llm/pricing/store.py): the bundled prices, exact round trips, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from apps.llm.models import ModelPrice
from apps.llm.pricing.sheets import parse_openrouter_catalog
from apps.llm.pricing.store import BUNDLED_FILES, DATA_DIR, apply_prices, load_bundled_prices
from tests.llm.pricing.catalogs import DEC_2025, FETCHED, JAN_2026, parse, raw_catalog


@pytest.mark.django_db
def test_migration_loaded_the_bundled_prices():
    current = ModelPrice.objects.current()
    table = json.loads((DATA_DIR / "openai-prices.json").read_text())["models"]
    assert current.filter(provider="openrouter").count() == 409 + 21
    assert current.filter(provider="openai").count() == len(table) == 42
    assert set(current.values_list("source", flat=True)) == {b.source for b in BUNDLED_FILES}
    assert not ModelPrice.objects.filter(valid_to__isnull=False).exists()
    chat = ModelPrice.objects.get(provider="openrouter", model_id="anthropic/claude-sonnet-4.5")
    assert chat.valid_from == chat.fetched_at == FETCHED
    assert ModelPrice.objects.get(provider="openai", model_id="gpt-4o-mini").prompt == Decimal("0.00000015")
    embedding = ModelPrice.objects.get(provider="openrouter", model_id="openai/text-embedding-3-small")
    assert embedding.output_modalities == ["embeddings"]
    outputs = {m for row in current.values_list("output_modalities", flat=True) for m in row}
    assert outputs == {"text", "image", "audio", "embeddings"}


@pytest.mark.django_db
def test_rows_give_back_exactly_the_parsed_pricing():
    """numeric(32, 24) and the JSON columns keep every price, tier and extra exactly."""
    for bundled in BUNDLED_FILES:
        expected = bundled.read().accepted
        rows = {r.model_id: r for r in ModelPrice.objects.current().filter(source=bundled.source)}
        assert len(rows) == len(expected)
        for pricing in expected:
            row = rows[pricing.model_id]
            assert row.to_pricing() == pricing.model_copy(update={"price_id": row.pk}), pricing.model_id


@pytest.mark.django_db
def test_apply_prices_keeps_history():
    ModelPrice.objects.filter(provider="openrouter").delete()
    december = parse(DEC_2025).accepted
    first = apply_prices(ModelPrice, december, now=datetime(2025, 12, 18, 16, tzinfo=UTC))
    assert len(first.created) == 347

    january = parse_openrouter_catalog(raw_catalog(JAN_2026), source=JAN_2026, fetched_at=FETCHED).accepted
    switch = datetime(2026, 1, 29, 5, tzinfo=UTC)
    second = apply_prices(ModelPrice, january, now=switch)
    assert "deepseek/deepseek-r1" in second.changed
    # Zero-valued keys dropped in 2026-01 are not a price change.
    assert "deepseek/deepseek-chat" in second.unchanged
    assert len(second.created) + len(second.changed) + len(second.unchanged) == 345

    old, new = ModelPrice.objects.filter(provider="openrouter", model_id="deepseek/deepseek-r1").order_by("valid_from")
    assert (old.prompt, old.valid_to) == (Decimal("0.0000003"), switch)
    assert (new.prompt, new.valid_from, new.valid_to) == (Decimal("0.0000007"), switch, None)
    # Models gone from the catalog are the sync's decision: apply_prices leaves them current.
    assert ModelPrice.objects.current().filter(provider="openrouter").count() == 345 + 347 - len(
        {p.model_id for p in december} & {p.model_id for p in january}
    )

    again = apply_prices(ModelPrice, january, now=switch + timedelta(hours=1))
    assert again.created == again.changed == [] and len(again.unchanged) == 345


@pytest.mark.django_db
def test_load_bundled_prices_never_overrides_newer_prices():
    synced_at = datetime(2026, 11, 27, tzinfo=UTC)
    ModelPrice.objects.filter(provider="openai", model_id="gpt-4o").update(valid_to=synced_at)
    ModelPrice.objects.create(
        provider="openai", model_id="gpt-4o", prompt=Decimal("0.000002"), source="sync", valid_from=synced_at
    )
    result = load_bundled_prices(ModelPrice)
    assert result.created == []
    assert ModelPrice.objects.current().get(provider="openai", model_id="gpt-4o").source == "sync"


@pytest.mark.django_db
def test_one_current_row_per_model():
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(provider="openai", model_id="gpt-4o-mini", source="duplicate")
    # A closed row may sit next to the current one.
    ModelPrice.objects.create(
        provider="openai",
        model_id="gpt-4o-mini",
        source="old",
        valid_from=FETCHED - timedelta(days=30),
        valid_to=FETCHED - timedelta(days=1),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(provider="openai", model_id="x", source="t", prompt=Decimal("-1"))
