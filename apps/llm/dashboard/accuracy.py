"""The cost-accuracy panel: how the period's calls were priced, and our costs against the provider's own.

Everything comes from figures the dashboard has already read from the rollups (the period's
totals and its per-model rows, which sum the ``reported_*`` counters too): the panel costs no
query of its own, and never reads the request log.
"""

from __future__ import annotations

from apps.llm.dashboard.results import CostAccuracy, Drift, PricingCount, Totals, UsageRow

#: The pricing categories, in the panel's order: (key, label).
PRICING = (
    ("exact", "Priced exactly"),
    ("estimated", "Estimated"),
    ("unpriced", "Unpriced"),
    ("refused", "Refused by a budget"),
    ("failed", "Failed"),
)


def pricing_counts(totals: Totals) -> dict[str, int]:
    """Calls per pricing category (``PRICING``) from a rollup total.

    The rollups count refusals, failures, answered calls without a price (``unpriced``) and
    calls priced from locally counted tokens or an estimated price (``estimated``); the calls
    priced exactly are the rest: answered, at a known price, from the provider's token counts.
    A stream cut off by the provider and priced from local counts is both failed and estimated,
    so in that rare case the exact count is short by those calls (never negative).
    """
    counted = {
        "estimated": totals.estimated,
        "unpriced": totals.unpriced,
        "refused": totals.refusals,
        "failed": totals.failures,
    }
    return {"exact": max(totals.requests - sum(counted.values()), 0), **counted}


def cost_accuracy(totals: Totals, models: list[UsageRow]) -> CostAccuracy:
    """The panel for a period: ``totals`` of the period, ``models`` its per-model rows (``model_rows``)."""
    counts = pricing_counts(totals)
    requests = totals.requests
    pricing = [
        PricingCount(key=key, label=label, calls=counts[key], share=counts[key] / requests if requests else None)
        for key, label in PRICING
    ]
    drifts = [
        Drift(
            label=row.label,
            filters=row.filters,
            calls=row.reported_calls,
            ours=row.reported_cost,
            theirs=row.reported_provider_cost,
        )
        for row in models
        if row.reported_calls
    ]
    # The largest drifts first, whichever way they go; then by spend.
    drifts.sort(key=lambda d: (-abs(d.amount), -d.ours, d.label))
    total = Drift(
        label="All models",
        filters=None,
        calls=totals.reported_calls,
        ours=totals.reported_cost,
        theirs=totals.reported_provider_cost,
    )
    return CostAccuracy(requests=requests, pricing=pricing, drifts=drifts, total=total)
