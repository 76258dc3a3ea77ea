"""Repricing past calls (apps/llm/accounting/reprice.py, ``manage.py reprice_requests``) after a price change.

The price change is a real one: OpenRouter's ``deepseek/deepseek-r1`` went from $0.30/$1.20 per
million tokens (catalog of 2025-12-18) to $0.70/$2.50 (catalog of 2026-01-29). Calls logged
after the change at the old price (the sync had not run) are repriced once the new row is in
the history; the log and every rollup must then equal what logging the calls at the right
price from the start gives.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.accounting.reprice import RepriceError, RepriceScope, reprice
from apps.llm.accounting.request_log import write_records
from apps.llm.accounting.rollups import all_rollups
from apps.llm.costs import calculate_cost
from apps.llm.models import LLMRequest, ModelPrice
from apps.llm.pricing.sheets import ModelPricing
from apps.llm.pricing.store import apply_prices, pricing_from_row
from apps.llm.types import Usage
from tests.llm.pricing.catalogs import DEC_2025, JAN_2026, parsed, raw_catalog

pytestmark = pytest.mark.django_db

R1 = "deepseek/deepseek-r1"
OLD_FROM = datetime(2025, 12, 18, 15, 11, 29, tzinfo=UTC)  # when the December snapshot was read
CHANGED_AT = datetime(2026, 1, 29, 4, 4, 34, tzinfo=UTC)  # when the January one was
D = Decimal


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def catalog_price(catalog: str, key: str) -> Decimal:
    return Decimal(next(m for m in raw_catalog(catalog)["data"] if m["id"] == R1)["pricing"][key])


@pytest.fixture
def old_price() -> ModelPrice:
    """The history before the fix: only December's price of deepseek-r1 (the sync missed January's)."""
    ModelPrice.objects.filter(provider="openrouter", model_id=R1).delete()
    apply_prices(ModelPrice, [parsed(DEC_2025)[R1]], now=OLD_FROM)
    return ModelPrice.objects.get(provider="openrouter", model_id=R1)


def priced(record: CallRecord, pricing: ModelPricing) -> CallRecord:
    """``record`` with the cost, price and breakdown the client would have given it at ``pricing``."""
    breakdown = calculate_cost(pricing, record.usage)
    return dataclasses.replace(
        record,
        cost=breakdown.total,
        price_id=pricing.price_id,
        cost_breakdown=breakdown.lines(),
        price_estimated=False,
    )


def call(when: datetime, prompt: int, completion: int, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "endpoint": "chat",
        "provider": "openrouter",
        "requested_model": R1,
        "model": R1,
        "status": SUCCESS,
        "usage": Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        "latency_ms": 400.0,
        "created_at": when,
    }
    return CallRecord(**(values | fields))


def logged_calls(users: list[int], old: ModelPricing) -> list[CallRecord]:
    """Calls over 2026-01-27..31 as they were logged: deepseek-r1 at December's price throughout."""
    alice, bob = users
    at_old = [
        call(at(27), 1200, 800, user_id=alice, feature="support"),
        call(at(28), 300, 2000, user_id=bob),
        call(at(29, 3), 500, 500, user_id=alice, feature="support"),  # before the change (04:04)
        call(at(29, 5), 500, 500, user_id=alice, feature="support"),  # after it
        call(at(30), 4000, 1500, user_id=alice, feature="support", provider_cost=D("0.0065")),
        call(at(30), 10, 3000, user_id=bob, feature="search"),
        call(at(31), 700, 100, user_id=None, feature="batch"),
    ]
    others = [
        # Unpriced when logged (the price could not be read): priced now.
        call(at(31), 1000, 1000, user_id=bob, feature="batch"),
        # Priced with a conservative estimate (LLM_UNPRICED=estimate): the real price replaces it.
        call(at(30), 2000, 100, user_id=alice, cost=D("0.02"), price_estimated=True),
        # Not repriced: a cache hit, a failure, and a model without a price in January 2026.
        call(at(30), 1200, 800, user_id=alice, cached=True, cost=D(0), saved_cost=D("0.00132")),
        call(at(31), 0, 0, user_id=bob, status=ERROR, error_type="ServerError"),
        call(
            at(31), 100, 100, user_id=bob, requested_model="openai/gpt-4o-mini", model="openai/gpt-4o-mini", cost=D(1)
        ),
    ]
    return [priced(record, old) for record in at_old] + others


def table_rows(table: str, exclude: tuple[str, ...] = ("id",)) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        names = [c.name for c in cursor.description]
        keep = [i for i, name in enumerate(names) if name not in exclude]
        return sorted(tuple(str(row[i]) for i in keep) for row in cursor.fetchall())


def state() -> dict[str, list[tuple]]:
    """The request log and every rollup, as comparable rows (surrogate ids left out)."""
    log = [
        (str(r.id), str(r.cost), r.price_id, r.cost_breakdown, r.price_estimated, r.saved_cost)
        for r in LLMRequest.objects.order_by("id")
    ]
    return {"log": log} | {r.table: table_rows(r.table) for r in all_rollups()}  # type: ignore[dict-item]


def fresh_state(records: list[CallRecord]) -> dict[str, list[tuple]]:
    """What logging ``records`` into an empty log gives (the same ids, so the same lists of calls)."""
    LLMRequest.objects.all().delete()
    for rollup in all_rollups():
        rollup.model.objects.all().delete()
    write_records(records)
    return state()


@pytest.fixture
def users(django_user_model) -> list[int]:
    return [django_user_model.objects.create_user(username=n, email=f"{n}@example.com").pk for n in ("alice", "bob")]


def test_reprice_after_a_price_change_equals_a_fresh_computation(old_price, users):
    old = pricing_from_row(old_price)
    records = logged_calls(users, old)
    assert write_records(records) == len(records)

    # The fix: January's price enters the history from the time it was published.
    apply_prices(ModelPrice, [parsed(JAN_2026)[R1]], now=CHANGED_AT)
    new_row = ModelPrice.objects.get(provider="openrouter", model_id=R1, valid_to__isnull=True)
    new = pricing_from_row(new_row)
    assert (new.prompt, new.completion) == (catalog_price(JAN_2026, "prompt"), catalog_price(JAN_2026, "completion"))

    before = state()
    dry = reprice(RepriceScope(since=date(2026, 1, 27), until=date(2026, 1, 31)), dry_run=True)
    assert state() == before, "a dry run writes nothing"

    report = reprice(RepriceScope(since=date(2026, 1, 27), until=date(2026, 1, 31)))
    assert (dry.examined, dry.repriced, dry.updated, dry.before, dry.after) == (
        report.examined,
        report.repriced,
        report.updated,
        report.before,
        report.after,
    )

    # What should have been logged: after the change, January's price (computed here from the
    # catalog's strings); before it, December's.
    expected = []
    for record in records:
        if record.status != SUCCESS or record.cached or record.model != R1:
            expected.append(record)
        elif record.created_at >= CHANGED_AT:
            fresh = priced(record, new)
            u = record.usage
            assert fresh.cost == u.prompt_tokens * D("0.0000007") + u.completion_tokens * D("0.0000025")
            expected.append(fresh)
        else:
            expected.append(record)
    pairs = [(r, e) for r, e in zip(records, expected, strict=True) if e.cost != r.cost]
    assert report.examined == 10  # 9 of deepseek-r1 (the cache hit and the failure are out of scope) + gpt-4o-mini
    assert report.no_price == 1  # gpt-4o-mini: no price in force in January 2026 (its row starts in August)
    assert report.repriced == report.updated == len(pairs) == 6
    assert report.before == sum((r.cost or 0 for r, _ in pairs), D(0))  # the unpriced call counts 0
    assert report.after == sum((e.cost for _, e in pairs), D(0))
    assert report.models[R1].repriced == 6

    after = state()
    assert after != before and all(after[r.table] for r in all_rollups())
    assert after == fresh_state(expected)
    # And the spot checks that matter: the costs moved, the counters followed.
    row = LLMRequest.objects.get(created_at=at(30), feature="support", cached=False)
    assert (
        row.cost == expected[4].cost and row.price_id == new_row.pk and row.cost_breakdown == expected[4].cost_breakdown
    )
    assert LLMRequest.objects.get(created_at=at(29, 3)).price_id == old_price.pk


def test_reprice_updates_the_rollup_counters(old_price, users):
    records = logged_calls(users, pricing_from_row(old_price))
    write_records(records)
    apply_prices(ModelPrice, [parsed(JAN_2026)[R1]], now=CHANGED_AT)
    daily = all_rollups()[-1].model

    def sums(**key: Any) -> dict[str, Any]:
        return daily.objects.filter(model=R1, **key).values(
            "unpriced", "estimated", "reported_calls", "reported_cost", "cost"
        )[0]

    assert sums(date=date(2026, 1, 31), user_id=users[1], feature="batch")["unpriced"] == 1
    assert sums(date=date(2026, 1, 30), user_id=users[0], feature="")["estimated"] == 1
    reported_before = sums(date=date(2026, 1, 30), user_id=users[0], feature="support")

    reprice(RepriceScope(since=date(2026, 1, 27)))

    assert sums(date=date(2026, 1, 31), user_id=users[1], feature="batch")["unpriced"] == 0
    assert sums(date=date(2026, 1, 30), user_id=users[0], feature="")["estimated"] == 0
    reported = sums(date=date(2026, 1, 30), user_id=users[0], feature="support")
    new_cost = 4000 * D("0.0000007") + 1500 * D("0.0000025")
    assert reported["reported_calls"] == reported_before["reported_calls"] == 1
    assert reported["reported_cost"] == new_cost
    estimated = LLMRequest.objects.get(created_at=at(30), user_id=users[0], feature="", cached=False)
    assert not estimated.price_estimated and estimated.cost == 2000 * D("0.0000007") + 100 * D("0.0000025")


def test_reprice_with_a_corrected_price_row(old_price, users):
    """``price_id``: every call of that row's model priced with it, whatever its date; other models untouched."""
    write_records(logged_calls(users, pricing_from_row(old_price)))
    corrected = ModelPrice.objects.create(
        provider="openrouter",
        model_id=R1,
        canonical_slug=R1,
        prompt=D("0.0000005"),
        completion=D("0.000002"),
        source="corrected by hand",
        valid_from=OLD_FROM,
        valid_to=OLD_FROM,  # not in force at any time: used only when named
    )
    report = reprice(RepriceScope(since=date(2026, 1, 27), price_id=corrected.pk))
    assert report.other_models == 1 and report.examined == 9 and report.repriced == 9
    for row in LLMRequest.objects.filter(model=R1, status=SUCCESS, cached=False):
        assert row.price_id == corrected.pk
        assert row.cost == row.prompt_tokens * D("0.0000005") + row.completion_tokens * D("0.000002")
    assert LLMRequest.objects.get(model="openai/gpt-4o-mini").cost == 1
    # The model filter narrows the calls; an unknown row is an error that writes nothing.
    assert reprice(RepriceScope(since=date(2026, 1, 27), model="openai/gpt-4o-mini")).examined == 1
    with pytest.raises(RepriceError, match="no ModelPrice row with id 0"):
        reprice(RepriceScope(since=date(2026, 1, 27), price_id=0))


def test_rollups_out_of_step_refuse_and_write_nothing(old_price, users):
    write_records(logged_calls(users, pricing_from_row(old_price)))
    apply_prices(ModelPrice, [parsed(JAN_2026)[R1]], now=CHANGED_AT)
    all_rollups()[-1].model.objects.filter(date=date(2026, 1, 31)).delete()
    before = state()
    with pytest.raises(RepriceError, match="out of step"):
        reprice(RepriceScope(since=date(2026, 1, 27)))
    assert state() == before


def test_batches_cover_every_row(old_price, users):
    """Pages of 2 rows: the same result as one page (keyset pages over equal timestamps too)."""
    records = logged_calls(users, pricing_from_row(old_price))
    write_records(records)
    apply_prices(ModelPrice, [parsed(JAN_2026)[R1]], now=CHANGED_AT)
    report = reprice(RepriceScope(since=date(2026, 1, 27)), batch_size=2)
    assert (report.examined, report.repriced) == (10, 6)


def test_command(old_price, users):
    write_records(logged_calls(users, pricing_from_row(old_price)))
    apply_prices(ModelPrice, [parsed(JAN_2026)[R1]], now=CHANGED_AT)
    before = state()
    out = io.StringIO()
    call_command("reprice_requests", "--since", "2026-01-27", "--until", "2026-01-31", "--dry-run", stdout=out)
    text = out.getvalue()
    assert text.startswith("Dry run (nothing written)") and "examined 10, repriced 6" in text
    assert f"{R1}: 6 of 9 calls" in text and " -> $" in text
    assert state() == before

    out = io.StringIO()
    call_command("reprice_requests", "--since", "2026-01-27", "--model", R1, stdout=out)
    assert "examined 9, repriced 6" in out.getvalue() and state() != before
    # Again: nothing left to change.
    out = io.StringIO()
    call_command("reprice_requests", "--since", "2026-01-27", stdout=out)
    assert "repriced 0, rows updated 0" in out.getvalue()

    with pytest.raises(CommandError, match="not a date"):
        call_command("reprice_requests", "--since", "January")
    with pytest.raises(CommandError, match="before"):
        call_command("reprice_requests", "--since", "2026-01-27", "--until", "2026-01-01")
    with pytest.raises(CommandError, match="no ModelPrice row"):
        call_command("reprice_requests", "--since", "2026-01-27", "--price-id", "0")


def test_days_before_the_first_price_are_left_alone(old_price, users):
    early = call(OLD_FROM - timedelta(days=1), 100, 100, cost=D("0.5"))
    write_records([early])
    report = reprice(RepriceScope(since=date(2025, 12, 1), until=date(2025, 12, 31)))
    assert (report.examined, report.no_price, report.updated) == (1, 1, 0)
    assert LLMRequest.objects.get(pk=early.id).cost == D("0.5")
