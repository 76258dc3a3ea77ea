"""The cost-accuracy panel's figures (apps/llm/dashboard/accuracy.py), against the seeded calls themselves.

The seed (tests/llm/dashboard/seeded.py) has refusals, failures, unpriced and estimated calls, and
OpenRouter calls whose reported cost sometimes differs from ours; every expected figure here is
a plain Python count or sum over those ``CallRecord`` objects.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS
from apps.llm.dashboard import PRICING, Totals, build_dashboard, cost_accuracy, pricing_counts
from tests.llm.dashboard.seeded import START, TODAY, filters


def expected_pricing(records) -> dict[str, int]:
    estimated = [r for r in records if r.usage_estimated or r.price_estimated]
    return {
        "exact": sum(
            r.status == SUCCESS and r.cost is not None and not (r.usage_estimated or r.price_estimated) for r in records
        ),
        "estimated": len(estimated),
        "unpriced": sum(r.status == SUCCESS and r.cost is None for r in records),
        "refused": sum(r.status == REFUSED for r in records),
        "failed": sum(r.status == ERROR for r in records),
    }


def expected_drifts(records) -> dict[tuple[str, str], tuple[int, Decimal, Decimal]]:
    """Per (provider, model): calls with both costs, our cost and the provider's over them."""
    sums: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for r in records:
        if r.cost is not None and r.provider_cost is not None:
            row = sums[(r.provider, r.model)]
            row[0] += 1
            row[1] += r.cost
            row[2] += r.provider_cost
    return {key: tuple(value) for key, value in sums.items()}


@pytest.mark.parametrize(
    "dims",
    [{}, {"provider": "openrouter"}, {"model": "anthropic/claude-3.5-sonnet"}, {"feature": "search"}, {"user": 0}],
)
def test_the_panel_matches_the_calls(seed, dims):
    select = dict(dims)
    if "user" in dims:
        select = {"user_id": seed.users[dims["user"]].pk}
    records = seed.select(START, TODAY, **select)
    accuracy = build_dashboard(filters(**select)).accuracy

    # How the calls were priced: every call once.
    expected = expected_pricing(records)
    assert {p.key: p.calls for p in accuracy.pricing} == expected
    assert [p.key for p in accuracy.pricing] == [key for key, _ in PRICING]
    assert sum(expected.values()) == len(records) == accuracy.requests
    if not dims:
        assert all(expected.values()), "the seed has calls of every kind"
    for p in accuracy.pricing:
        assert p.share == pytest.approx(expected[p.key] / len(records))

    # Ours against the provider's, per model, over the calls with both.
    drifts = expected_drifts(records)
    assert {(d.filters.provider, d.filters.model): (d.calls, d.ours, d.theirs) for d in accuracy.drifts} == drifts
    for d in accuracy.drifts:
        assert d.amount == d.ours - d.theirs
        assert d.share == (d.ours - d.theirs) / d.theirs
        assert d.filters == filters(**select).narrowed(provider=d.filters.provider, model=d.filters.model)
    # The largest drifts first.
    assert [abs(d.amount) for d in accuracy.drifts] == sorted((abs(d.amount) for d in accuracy.drifts), reverse=True)
    total = accuracy.total
    assert (total.calls, total.ours, total.theirs) == (
        sum(c for c, _, _ in drifts.values()),
        sum((o for _, o, _ in drifts.values()), Decimal(0)),
        sum((t for _, _, t in drifts.values()), Decimal(0)),
    )
    if dims in ({}, {"provider": "openrouter"}):
        assert any(d.amount for d in accuracy.drifts), "the seed has drifting OpenRouter calls"


def test_a_stream_cut_by_the_provider_counts_as_failed_and_estimated():
    # The rollups' counters overlap for it: the exact count is short by such calls, never negative.
    totals = Totals()
    totals.sums.update(requests=3, successes=1, failures=2, estimated=2, unpriced=0, refusals=0)
    assert pricing_counts(totals) == {"exact": 0, "estimated": 2, "unpriced": 0, "refused": 0, "failed": 2}


def test_no_reported_costs_and_no_calls():
    accuracy = cost_accuracy(Totals(), [])
    assert accuracy.requests == 0 and accuracy.drifts == [] and accuracy.total.calls == 0
    assert all(p.calls == 0 and p.share is None for p in accuracy.pricing)
    assert accuracy.total.share is None  # nothing reported: no percentage of nothing


def test_refusals_are_not_errors(seed):
    data = build_dashboard(filters())
    records = seed.select(START, TODAY)
    refused = sum(r.status == REFUSED for r in records)
    failed = sum(r.status == ERROR for r in records)
    assert refused and data.current.refusals == refused and data.current.failures == failed
    figures = {f.key: f for f in data.figures}
    assert figures["error_rate"].value == pytest.approx(failed / (len(records) - refused))
    assert figures["refused"].value == refused and figures["refused"].kind == "count"
    for i, day in enumerate(data.daily.days):
        assert data.daily.refusals[i] == sum(r.status == REFUSED for r in seed.select(day, day))
    for row in data.models:
        rs = seed.select(START, TODAY, provider=row.filters.provider, model=row.filters.model)
        assert (row.failures, row.refusals) == (
            sum(r.status == ERROR for r in rs),
            sum(r.status == REFUSED for r in rs),
        )
