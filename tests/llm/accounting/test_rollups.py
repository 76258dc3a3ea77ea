"""The rollups: every grouping equals the request log summed, under concurrent writers and after rebuilds."""

from __future__ import annotations

import importlib
import random
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.accounting.rollups import DIMENSIONS, SUMS, all_rollups, rebuild, rebuild_coarse, rollup_for
from apps.llm.models import LLMRequest, LLMUsageByModel, LLMUsageByUser, LLMUsageDaily
from apps.llm.types import Usage

DAY = datetime(2026, 3, 2, 9, tzinfo=UTC)
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4.1-nano"), ("openrouter", "anthropic/claude-haiku-4.5")]


def random_records(rng: random.Random, n: int) -> list[CallRecord]:
    records = []
    for _ in range(n):
        provider, model = rng.choice(MODELS)
        cached = rng.random() < 0.2
        prompt, completion = rng.randint(1, 5000), rng.randint(0, 800)
        status = rng.choices([SUCCESS, ERROR, REFUSED], [0.85, 0.1, 0.05])[0]
        cost = Decimal(rng.randint(0, 10**6)) / 10**9
        if status == REFUSED:
            cost = Decimal(0)
        elif status == SUCCESS and rng.random() < 0.05:
            cost = None  # a model without a price
        records.append(
            CallRecord(
                endpoint="chat",
                provider=provider,
                requested_model=model,
                model=model,
                status=status,
                usage=Usage(
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    total_tokens=prompt + completion,
                    cached_tokens=rng.randint(0, prompt),
                ),
                cost=cost,
                provider_cost=Decimal(rng.randint(0, 10**6)) / 10**9 if rng.random() < 0.3 else None,
                usage_estimated=rng.random() < 0.05,
                saved_cost=Decimal(rng.randint(1, 999)) / 10**8 if cached else None,
                cached=cached,
                latency_ms=rng.expovariate(1 / 800),
                feature=rng.choice(["", "chat", "search", "extract"]),
                user_id=rng.choice([None, 1, 2, 3, 4]),
                created_at=DAY + timedelta(hours=rng.randint(0, 24 * 4)),
            )
        )
    return records


def grouped(model, dimensions: tuple[str, ...]) -> dict[tuple, tuple]:
    """Every sum and the histogram of ``model``'s rows, summed per (date, *dimensions) in Python."""
    sums: dict[tuple, list] = defaultdict(lambda: [0] * len(SUMS) + [[]])
    for row in model.objects.values("date", *dimensions, *SUMS, "latency_histogram"):
        into = sums[(row["date"], *(row[d] for d in dimensions))]
        for i, name in enumerate(SUMS):
            into[i] += row[name]
        histogram = row["latency_histogram"]
        into[-1] = [a + b for a, b in zip(into[-1] or [0] * len(histogram), histogram)]
    return {key: (*tuple(value[:-1]), tuple(value[-1])) for key, value in sums.items()}


def kept_calls(dimensions: tuple[str, ...]) -> dict[tuple, tuple[list, list]]:
    """Per (UTC day, *dimensions), from the log in Python: the 10 costliest priced calls and the
    10 latest failures, as (value, id), highest first, ties by id."""
    costly, failed = defaultdict(list), defaultdict(list)
    for row in LLMRequest.objects.values("id", "cost", "status", "created_at", *dimensions):
        key = (row["created_at"].astimezone(UTC).date(), *(row[d] for d in dimensions))
        if row["cost"] is not None:
            costly[key].append((row["cost"], row["id"]))
        if row["status"] == ERROR:
            failed[key].append((row["created_at"], row["id"]))

    def first(calls: list) -> list:
        return sorted(calls, key=lambda c: (c[0], -c[1].int), reverse=True)[:10]

    return {key: (first(costly[key]), first(failed[key])) for key in costly.keys() | failed.keys()}


def assert_rollups_agree() -> None:
    finest = all_rollups()[-1]
    assert finest.model is LLMUsageDaily
    for rollup in all_rollups()[:-1]:
        expected = grouped(LLMUsageDaily, rollup.dimensions)
        assert expected, "no rows to compare"
        assert grouped(rollup.model, rollup.dimensions) == expected, rollup.model.__name__
        kept = {
            (r["date"], *(r[d] for d in rollup.dimensions)): (
                list(zip(r["top_costs"], r["top_ids"])),
                list(zip(r["failure_times"], r["failure_ids"])),
            )
            for r in rollup.model.objects.values(
                "date", *rollup.dimensions, "top_costs", "top_ids", "failure_times", "failure_ids"
            )
            if r["top_ids"] or r["failure_ids"]
        }
        assert kept == kept_calls(rollup.dimensions), f"{rollup.model.__name__}: kept calls"
        assert any(len(costly) == 10 for costly, _ in kept.values())  # the lists were cut, not just filled
        assert any(failed for _, failed in kept.values())


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_every_rollup_equal_to_the_finest():
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        rng = random.Random(n)
        barrier.wait()
        for _ in range(8):
            write_records(random_records(rng, 25))
        connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert LLMRequest.objects.count() == 6 * 8 * 25
    assert_rollups_agree()
    assert sum(LLMUsageByUser.objects.values_list("requests", flat=True)) == 1200
    # The coarse tables are small: one row per (day, user), per (day, provider, model, feature).
    days = LLMUsageDaily.objects.values("date").distinct().count()
    assert LLMUsageByUser.objects.count() <= days * 5 < LLMUsageDaily.objects.count()


@pytest.mark.django_db
def test_rebuild_recomputes_the_days_asked_and_leaves_the_others():
    write_records(random_records(random.Random(7), 600))
    day = DAY.date() + timedelta(days=1)
    LLMUsageByUser.objects.filter(date=day).update(requests=0, cost=Decimal("123"))
    LLMUsageByModel.objects.filter(date=day).delete()
    other_day = LLMUsageByUser.objects.filter(date=day + timedelta(days=1))
    before = sorted(other_day.values_list("pk", flat=True))

    written = rebuild_coarse(start=day, end=day)
    rows_of_the_day = [m.objects.filter(date=day).count() for m in (LLMUsageByUser, LLMUsageByModel)]
    assert written == sum(rows_of_the_day) and all(rows_of_the_day)
    assert_rollups_agree()
    assert sorted(other_day.values_list("pk", flat=True)) == before  # untouched, not rewritten (same ids)
    with pytest.raises(ValueError, match="finest"):
        rebuild(all_rollups()[-1])


@pytest.mark.django_db
def test_the_migration_backfills_build_the_same_rows():
    # The migrations' SQL is frozen; run in order over today's tables, it must give the rows the
    # live code keeps: 0008 builds the coarse rollups, 0009 adds the completeness counters.
    by_model_and_user = importlib.import_module("apps.llm.migrations.0008_usage_rollups_by_model_and_user")
    completeness = importlib.import_module("apps.llm.migrations.0009_accounting_completeness")
    write_records(random_records(random.Random(3), 600))
    live = grouped(LLMUsageDaily, DIMENSIONS)
    LLMUsageByModel.objects.all().delete()
    LLMUsageByUser.objects.all().delete()
    # The finest rollup as 0009 found it: refusals counted as failures, no new counters.
    LLMUsageDaily.objects.update(failures=F("failures") + F("refusals"), **dict.fromkeys(completeness.NEW_COUNTERS, 0))
    with connection.cursor() as cursor:
        for statement in [
            *by_model_and_user.backfill("llm_llmusagebymodel", "provider", "model", "feature"),
            *by_model_and_user.backfill("llm_llmusagebyuser", "user_id"),
            *completeness.BACKFILL,
        ]:
            cursor.execute(statement)
    assert (*by_model_and_user.SUMS, *completeness.NEW_COUNTERS) == SUMS
    assert grouped(LLMUsageDaily, DIMENSIONS) == live
    assert_rollups_agree()


def test_the_smallest_rollup_that_has_the_dimensions_answers():
    assert rollup_for({"user_id"}).model is LLMUsageByUser
    assert rollup_for(set()).model is LLMUsageByModel
    assert rollup_for({"feature"}).model is LLMUsageByModel
    assert rollup_for({"provider", "model", "feature"}).model is LLMUsageByModel
    assert rollup_for({"user_id", "model"}).model is LLMUsageDaily
    with pytest.raises(ValueError, match="endpoint"):
        rollup_for({"endpoint"})
