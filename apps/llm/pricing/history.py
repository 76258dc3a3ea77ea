"""The prices in force at any past instant: ``ModelPrice`` history, looked up as ``ModelsCache`` does now.

A price change never edits a row: the old row is closed (``valid_to``) and a new one starts at
the same instant, so the rows in force at a time are those with ``valid_from <= t < valid_to``.
``PriceHistory`` answers "which price sheet applied to this model at that time" with the same
name resolution as the live lookup (canonical slugs, dated snapshots, provider prefixes), so a
past call is repriced exactly as it would have been priced then. Withdrawn rows
(``is_active=False``) count: the flag says the provider stopped listing the model, not since
when, and a call that was made was served at the price of its period.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from apps.llm.pricing.lookup import PriceIndex
from apps.llm.pricing.sheets import ModelPricing
from apps.llm.pricing.store import pricing_from_row


@dataclass(frozen=True)
class PricePeriod:
    """A price sheet and the time it was in force (``valid_to`` None: still is)."""

    pricing: ModelPricing
    valid_from: datetime
    valid_to: datetime | None = None

    def in_force(self, when: datetime) -> bool:
        return self.valid_from <= when and (self.valid_to is None or when < self.valid_to)


class PriceHistory:
    """Price sheets over time; ``get(model, provider, when)`` is ``ModelsCache.get`` at ``when``.

    ``corrected``, when given, replaces every sheet of its (provider, model) at every time: the
    prices a corrected row says should have applied.
    """

    def __init__(self, periods: Iterable[PricePeriod], *, corrected: ModelPricing | None = None):
        self.corrected = corrected
        self._periods = [p for p in periods if corrected is None or not _same_model(p.pricing, corrected)]
        # Between two consecutive boundaries the set of rows in force does not change: one index each.
        self._boundaries = sorted(
            {p.valid_from for p in self._periods} | {p.valid_to for p in self._periods if p.valid_to}
        )
        self._indexes: dict[int, PriceIndex] = {}

    def get(self, model: str, provider: str | None, when: datetime) -> ModelPricing | None:
        return self.index_at(when).resolve(model, provider)

    def index_at(self, when: datetime) -> PriceIndex:
        epoch = bisect_right(self._boundaries, when)
        index = self._indexes.get(epoch)
        if index is None:
            pricings = [p.pricing for p in self._periods if p.in_force(when)]
            if self.corrected is not None:
                pricings.append(self.corrected)
            index = self._indexes[epoch] = PriceIndex.build(pricings)
        return index


def _same_model(a: ModelPricing, b: ModelPricing) -> bool:
    return (a.provider, a.model_id) == (b.provider, b.model_id)


def load_price_history(
    start: datetime | None = None, end: datetime | None = None, *, corrected_id: int | None = None
) -> PriceHistory:
    """The ``ModelPrice`` rows in force at some time in ``start``..``end`` (None: open), as a history.

    ``corrected_id``: the id of a row whose prices replace those of its model at every time.
    A missing id raises ``LookupError``.
    """
    # Imported here: this module is importable before Django's app registry is ready.
    from apps.llm.models import ModelPrice

    rows = ModelPrice.objects.all()
    if end is not None:
        rows = rows.filter(valid_from__lt=end)
    if start is not None:
        rows = rows.exclude(valid_to__lte=start)
    periods = [PricePeriod(pricing_from_row(row), row.valid_from, row.valid_to) for row in rows]
    corrected = None
    if corrected_id is not None:
        row = ModelPrice.objects.filter(pk=corrected_id).first()
        if row is None:
            raise LookupError(f"no ModelPrice row with id {corrected_id}")
        corrected = pricing_from_row(row)
    return PriceHistory(periods, corrected=corrected)
