"""``ModelPricing`` sheets in the database as ``ModelPrice`` rows, and the bundled price data.

The functions take the model class as an argument so that a data migration can pass its
historical model (``apps.get_model("llm", "ModelPrice")``) and never import today's one. They
only write the fields that model has, so a later schema change does not break old migrations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from .pricing import (
    PRICE_COMPONENTS,
    CatalogParseResult,
    ModelPricing,
    PriceTier,
    decimal_text,
    parse_openrouter_catalog,
    parse_price_table,
    to_decimal,
)

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class BundledFile:
    """A price file shipped with the app, so costs work offline from the first ``migrate``."""

    filename: str
    #: When the data was read from its origin (see data/SOURCES.md).
    fetched_at: datetime
    parse: Callable[..., CatalogParseResult]

    @property
    def source(self) -> str:
        return f"bundled:{self.filename}"

    def read(self) -> CatalogParseResult:
        payload = json.loads((DATA_DIR / self.filename).read_text(encoding="utf-8"))
        return self.parse(payload, source=self.source, fetched_at=self.fetched_at)


def _openai_table(payload: dict[str, Any], *, source: str, fetched_at: datetime) -> CatalogParseResult:
    return parse_price_table(payload, provider="openai", source=source, fetched_at=fetched_at)


BUNDLED_FILES = (
    BundledFile(
        "openrouter-models-2026-08-18.json", datetime(2026, 8, 18, 20, 1, 54, tzinfo=UTC), parse_openrouter_catalog
    ),
    BundledFile(
        "openrouter-embeddings-models-2025-12-14.json",
        datetime(2025, 12, 15, 6, 5, 14, tzinfo=UTC),
        parse_openrouter_catalog,
    ),
    BundledFile("openai-prices.json", datetime(2026, 11, 26, tzinfo=UTC), _openai_table),
)


@dataclass
class ApplyResult:
    """What ``apply_prices`` did, by model id."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def price_row_values(pricing: ModelPricing) -> dict[str, Any]:
    """The ``ModelPrice`` field values for ``pricing`` (JSON columns hold decimal strings)."""
    return {
        "provider": pricing.provider,
        "model_id": pricing.model_id,
        "canonical_slug": pricing.canonical_slug or "",
        "name": pricing.name,
        **{component: getattr(pricing, component) for component in PRICE_COMPONENTS},
        "extra_prices": {key: decimal_text(value) for key, value in pricing.extra_prices.items()},
        "tiers": [tier.to_catalog() for tier in pricing.tiers],
        "context_length": pricing.context_length,
        "modality": pricing.modality or "",
        "input_modalities": list(pricing.input_modalities),
        "output_modalities": list(pricing.output_modalities),
        "source": pricing.source,
        "fetched_at": pricing.fetched_at,
    }


def pricing_from_row(row: Any) -> ModelPricing:
    """The ``ModelPricing`` of a ``ModelPrice`` row (current or historical model)."""
    return ModelPricing(
        provider=row.provider,
        model_id=row.model_id,
        canonical_slug=row.canonical_slug or None,
        name=row.name,
        **{component: _plain(getattr(row, component)) for component in PRICE_COMPONENTS},
        extra_prices={key: _plain(to_decimal(value)) for key, value in (row.extra_prices or {}).items()},
        tiers=[PriceTier.from_catalog(item) for item in row.tiers or []],
        context_length=row.context_length,
        modality=row.modality or None,
        input_modalities=getattr(row, "input_modalities", None) or [],
        output_modalities=getattr(row, "output_modalities", None) or [],
        source=row.source,
        fetched_at=row.fetched_at,
        price_id=row.pk,
    )


def _plain(value: Decimal) -> Decimal:
    # numeric(32, 24) gives back "0.000003000000000000000000"; the catalog said "0.000003".
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _price_terms(pricing: ModelPricing) -> tuple:
    """What makes two sheets the same price (Decimals compare by value: 0.10 == 0.1)."""
    return (
        tuple(getattr(pricing, component) for component in PRICE_COMPONENTS),
        pricing.extra_prices,
        pricing.tiers,
    )


def apply_prices(
    model: type[models.Model], pricings: Iterable[ModelPricing], *, now: datetime | None = None
) -> ApplyResult:
    """Make ``pricings`` the current prices, keeping the history.

    A model without a current row gets one. A current row whose prices differ is closed
    (``valid_to = now``) and a new row starts at ``now``. A row with the same prices stays;
    its descriptive fields (name, context length, source...) are refreshed in place and it is
    reactivated if it had been withdrawn. Models absent from ``pricings`` are left alone:
    whether a missing model is withdrawn is the caller's decision.
    """
    now = now or timezone.now()
    pricings = list(pricings)
    result = ApplyResult()
    if not pricings:
        return result
    field_names = {f.name for f in model._meta.get_fields()}
    providers = {p.provider for p in pricings}
    rows: Iterable[Any] = model.objects.filter(provider__in=providers, valid_to__isnull=True)
    current = {(row.provider, row.model_id): row for row in rows}
    to_close: list[Any] = []
    to_create: list[Any] = []
    to_refresh: list[Any] = []
    for pricing in pricings:
        values = {k: v for k, v in price_row_values(pricing).items() if k in field_names}
        row: Any = current.get((pricing.provider, pricing.model_id))
        if row is None:
            result.created.append(pricing.model_id)
        elif _price_terms(pricing_from_row(row)) != _price_terms(pricing):
            result.changed.append(pricing.model_id)
            to_close.append(row.pk)
        else:
            result.unchanged.append(pricing.model_id)
            for name, value in values.items():
                setattr(row, name, value)
            row.is_active = True
            to_refresh.append(row)
            continue
        to_create.append(model(**values, is_active=True, valid_from=now))
    refreshed_fields = [name for name in price_row_values(pricings[0]) if name in field_names] + ["is_active"]
    with transaction.atomic():
        # Close first: the new row may only be inserted once the old one is no longer current.
        model.objects.filter(pk__in=to_close).update(valid_to=now)
        model.objects.bulk_create(to_create)
        model.objects.bulk_update(to_refresh, refreshed_fields, batch_size=500)
    return result


def load_bundled_pricings() -> list[ModelPricing]:
    """Every price sheet in the bundled files (rejected entries are logged and skipped)."""
    pricings: list[ModelPricing] = []
    for bundled in BUNDLED_FILES:
        parsed = bundled.read()
        pricings.extend(parsed.accepted)
    return pricings


def load_bundled_prices(model: type[models.Model]) -> ApplyResult:
    """Give every model without current prices those of the bundled files.

    Prices already present (from a sync, newer than the bundled snapshot) are kept; each new
    row starts at its file's ``fetched_at``, when those prices were known to be in force.
    """
    result = ApplyResult()
    have = set(model.objects.filter(valid_to__isnull=True).values_list("provider", "model_id"))
    for bundled in BUNDLED_FILES:
        missing = [p for p in bundled.read().accepted if (p.provider, p.model_id) not in have]
        applied = apply_prices(model, missing, now=bundled.fetched_at)
        result.created += applied.created
        have.update((p.provider, p.model_id) for p in missing)
    return result
