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

from django.db import connections, models, router, transaction
from django.utils import timezone

from apps.llm.pricing.sheets import (
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

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


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
        **{component: _trimmed(getattr(row, component)) for component in PRICE_COMPONENTS},
        extra_prices={key: _trimmed(to_decimal(value)) for key, value in (row.extra_prices or {}).items()},
        tiers=[PriceTier.from_catalog(item) for item in row.tiers or []],
        context_length=row.context_length,
        modality=row.modality or None,
        input_modalities=getattr(row, "input_modalities", None) or [],
        output_modalities=getattr(row, "output_modalities", None) or [],
        source=row.source,
        fetched_at=row.fetched_at,
        price_id=row.pk,
    )


def _trimmed(value: Decimal) -> Decimal:
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
    rows: Iterable[Any] = model._default_manager.filter(provider__in=providers, valid_to__isnull=True)
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
        model._default_manager.filter(pk__in=to_close).update(valid_to=now)
        model._default_manager.bulk_create(to_create)
        model._default_manager.bulk_update(to_refresh, refreshed_fields, batch_size=500)
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
    have = set(model._default_manager.filter(valid_to__isnull=True).values_list("provider", "model_id"))
    for bundled in BUNDLED_FILES:
        missing = [p for p in bundled.read().accepted if (p.provider, p.model_id) not in have]
        applied = apply_prices(model, missing, now=bundled.fetched_at)
        result.created += applied.created
        have.update((p.provider, p.model_id) for p in missing)
    return result


# -- a full sync: apply a catalog and withdraw what it no longer lists ---------------------------


#: Per component: (old, new). Prices are Decimals (a component missing from a sheet is 0);
#: the ``"tiers"`` entry, when tiers changed, holds the two lists of tiers in catalog form.
PriceDiff = dict[str, tuple[Any, Any]]


@dataclass
class SyncResult:
    """What ``sync_prices`` did, by model id.

    ``changed`` maps each repriced model to its per-component differences. A withdrawn model
    that is listed again is in ``reactivated``, and also in ``changed`` if it comes back at a
    different price; ``unchanged`` holds only models that were current, active and kept their
    price. ``active_before`` is how many current, active rows the sync was authoritative for,
    so a caller can judge the share of ``deactivated``.
    """

    added: list[str] = field(default_factory=list)
    changed: dict[str, PriceDiff] = field(default_factory=dict)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    active_before: int = 0


def price_differences(old: ModelPricing, new: ModelPricing) -> PriceDiff:
    """The components whose price differs between two sheets, as ``{component: (old, new)}``.

    A component absent from a sheet costs 0, so a key the catalog stopped sending because it
    is zero is not a difference. Tiers are compared as a whole (a tier restates its condition
    with its prices, so a per-component diff would not say which tier changed).
    """
    diff: PriceDiff = {}
    for component in PRICE_COMPONENTS:
        before, after = getattr(old, component), getattr(new, component)
        if before != after:
            diff[component] = (before, after)
    zero = Decimal(0)
    for key in sorted(old.extra_prices.keys() | new.extra_prices.keys()):
        before, after = old.extra_prices.get(key, zero), new.extra_prices.get(key, zero)
        if before != after:
            diff[key] = (before, after)
    if old.tiers != new.tiers:
        diff["tiers"] = ([tier.to_catalog() for tier in old.tiers], [tier.to_catalog() for tier in new.tiers])
    return diff


def sync_prices(
    model: type[models.Model],
    pricings: Iterable[ModelPricing],
    *,
    provider: str,
    now: datetime | None = None,
    listed: Iterable[str] = (),
    scope: models.Q | None = None,
) -> SyncResult:
    """Make ``pricings`` the complete current price list of ``provider``, in one transaction.

    Prices are applied as ``apply_prices`` does (a change closes the old row at ``now`` and
    starts a new one, so past calls keep the price they were charged). In addition, current
    rows of ``provider`` that ``pricings`` does not list are withdrawn (``is_active=False``;
    never deleted, never closed, so a model listed again at the same price is reactivated in
    place). Ids in ``listed`` count as listed without being applied: the catalog named them
    but their entries were rejected, so their stored prices stay as they are. ``scope``
    narrows the rows this list is authoritative for (e.g. only embedding models when only
    the embeddings catalog was read); rows outside it are never withdrawn.

    Concurrent syncs of one provider are serialised by a transaction-scoped advisory lock, so
    two of them cannot both insert the new row of a model.
    """
    now = now or timezone.now()
    pricings = list(pricings)
    others = {p.provider for p in pricings} - {provider}
    if others:
        raise ValueError(f"sync_prices({provider!r}) was given prices of {sorted(others)}")
    present = {p.model_id for p in pricings} | set(listed)
    database = router.db_for_write(model)
    result = SyncResult()
    with transaction.atomic(using=database):
        _lock_provider(database, provider)
        current_rows: Iterable[Any] = model._default_manager.filter(provider=provider, valid_to__isnull=True)
        current = {row.model_id: row for row in current_rows}
        authoritative = model._default_manager.filter(provider=provider, valid_to__isnull=True, is_active=True)
        if scope is not None:
            authoritative = authoritative.filter(scope)
        result.active_before = authoritative.count()
        diffs = {
            p.model_id: price_differences(pricing_from_row(current[p.model_id]), p)
            for p in pricings
            if p.model_id in current
        }
        result.reactivated = [
            p.model_id for p in pricings if p.model_id in current and not current[p.model_id].is_active
        ]

        applied = apply_prices(model, pricings, now=now)

        result.added = applied.created
        for model_id in applied.changed:
            # Only zero-valued extras present on one side and absent on the other can make
            # apply_prices see a change that costs nothing; report them rather than hide it.
            result.changed[model_id] = diffs[model_id] or _extras_presence(current[model_id], model_id, pricings)
        reactivated = set(result.reactivated)
        result.unchanged = [model_id for model_id in applied.unchanged if model_id not in reactivated]
        withdrawn = authoritative.exclude(model_id__in=present)
        result.deactivated = sorted(withdrawn.values_list("model_id", flat=True))
        withdrawn.update(is_active=False)
    return result


def _extras_presence(row: Any, model_id: str, pricings: list[ModelPricing]) -> PriceDiff:
    new = next(p for p in pricings if p.model_id == model_id)
    old = row.extra_prices or {}
    return {"extra_prices": (dict(old), {k: decimal_text(v) for k, v in new.extra_prices.items()})}


def _lock_provider(database: str, provider: str) -> None:
    connection = connections[database]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"llm.sync_prices:{provider}"])
