"""The tag rollup: a call once under each of its tags, equal to the request log grouped by tag."""

from __future__ import annotations

import importlib
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, timedelta
from decimal import Decimal
from itertools import combinations

import pytest
from django.db import connection

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.accounting.rollups import (
    DIMENSIONS,
    SUMS,
    all_rollups,
    rebuild_coarse,
    rebuild_tags,
    rollup_for,
    tag_rollup,
)
from apps.llm.models import HISTOGRAM_BUCKETS, LLMRequest, LLMUsageByTag, latency_bucket
from tests.llm.accounting.test_rollups import DAY, grouped, random_records

TAGS = ["support", "exp:a", "exp:b", "beta", "ticket"]

pytestmark = pytest.mark.django_db


def tagged_records(rng: random.Random, n: int) -> list[CallRecord]:
    """Random calls, a third without tags, the others with one to three (and one with a tag twice)."""
    records = []
    for r in random_records(rng, n):
        tags = () if rng.random() < 0.33 else tuple(rng.sample(TAGS, rng.randint(1, 3)))
        records.append(replace(r, tags=tags))
    records[0] = replace(records[0], tags=("support", "support"))
    return records


def log_by_tag() -> dict[tuple, tuple]:
    """Every counter and the histogram per (UTC day, tag), summed in Python over the log's rows."""
    expected: dict[tuple, list] = defaultdict(lambda: [0] * len(SUMS) + [[0] * HISTOGRAM_BUCKETS])
    index = {name: i for i, name in enumerate(SUMS)}
    for row in LLMRequest.objects.values():
        fresh = not row["cached"]
        adds = {
            "requests": 1,
            "successes": row["status"] == SUCCESS,
            "failures": row["status"] == ERROR,
            "refusals": row["status"] == REFUSED,
            "cache_hits": row["cached"],
            **{
                c: row[c] if fresh else 0
                for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
            },
            "cost": row["cost"] or 0,
            "provider_cost": row["provider_cost"] or 0,
            "saved_cost": row["saved_cost"] or 0,
            "latency_ms_sum": round(row["latency_ms"]),
            "unpriced": row["status"] == SUCCESS and row["cost"] is None,
            "estimated": row["usage_estimated"] or row["price_estimated"],
            "reported_calls": row["cost"] is not None and row["provider_cost"] is not None,
            "reported_cost": row["cost"] if row["provider_cost"] is not None and row["cost"] is not None else 0,
            "reported_provider_cost": row["provider_cost"]
            if row["cost"] is not None and row["provider_cost"] is not None
            else 0,
        }
        assert set(adds) == set(SUMS)
        for tag in set(row["tags"]):
            into = expected[(row["created_at"].astimezone(UTC).date(), tag)]
            for name, value in adds.items():
                into[index[name]] += value
            into[-1][latency_bucket(row["latency_ms"])] += 1
    return {key: (*value[:-1], tuple(value[-1])) for key, value in expected.items()}


def kept_by_tag() -> dict[tuple, tuple[list, list]]:
    """Per (UTC day, tag): the 10 costliest priced calls and the 10 latest failures, highest first, ties by id."""
    costly, failed = defaultdict(list), defaultdict(list)
    for row in LLMRequest.objects.exclude(tags=[]).values("id", "cost", "status", "created_at", "tags"):
        for tag in set(row["tags"]):
            key = (row["created_at"].astimezone(UTC).date(), tag)
            if row["cost"] is not None:
                costly[key].append((row["cost"], row["id"]))
            if row["status"] == ERROR:
                failed[key].append((row["created_at"], row["id"]))

    def first(calls: list) -> list:
        return sorted(calls, key=lambda c: (c[0], -c[1].int), reverse=True)[:10]

    return {key: (first(costly[key]), first(failed[key])) for key in costly.keys() | failed.keys()}


def assert_tag_rollup_is_the_log() -> None:
    expected = log_by_tag()
    assert expected, "no tagged calls: the test would prove nothing"
    assert grouped(LLMUsageByTag, ("tag",)) == expected
    kept = kept_by_tag()
    for row in LLMUsageByTag.objects.all():
        costly, failed = kept.get((row.date, row.tag), ([], []))
        assert list(zip(row.top_costs, row.top_ids, strict=True)) == costly, (row.date, row.tag)
        assert list(zip(row.failure_times, row.failure_ids, strict=True)) == failed, (row.date, row.tag)
    # The same, straight from SQL for the headline counters: GROUP BY unnest(tags).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT day, tag, count(*), coalesce(sum(cost), 0), coalesce(sum(total_tokens) FILTER (WHERE NOT cached), 0) "
            "FROM (SELECT DISTINCT id, (created_at AT TIME ZONE 'UTC')::date AS day, unnest(tags) AS tag, cost, "
            "      total_tokens, cached FROM llm_llmrequest) per_tag GROUP BY day, tag"
        )
        by_sql = {(day, tag): (n, cost, tokens) for day, tag, n, cost, tokens in cursor.fetchall()}
    rolled = {(r.date, r.tag): (r.requests, r.cost, r.total_tokens) for r in LLMUsageByTag.objects.all()}
    assert rolled == by_sql


def write_in_batches(records: list[CallRecord], size: int = 70) -> int:
    return sum(write_records(records[i : i + size]) for i in range(0, len(records), size))


def test_tag_rollup_equals_the_log_grouped_by_tag():
    records = tagged_records(random.Random(15), 400)
    assert write_in_batches(records) == 400
    assert_tag_rollup_is_the_log()
    untagged = sum(1 for r in records if not r.tags)
    assert untagged > 50
    # Every call once per distinct tag; a call without tags nowhere.
    assert sum(r.requests for r in LLMUsageByTag.objects.all()) == sum(len(set(r.tags)) for r in records)
    assert set(LLMUsageByTag.objects.values_list("tag", flat=True)) == set(TAGS)
    day, support = (
        records[0].created_at.date(),
        LLMUsageByTag.objects.get(date=records[0].created_at.date(), tag="support"),
    )
    assert support.requests == sum(1 for r in records if "support" in r.tags and r.created_at.date() == day)


def test_replaying_a_batch_changes_nothing():
    records = tagged_records(random.Random(16), 200)
    write_in_batches(records)
    before = grouped(LLMUsageByTag, ("tag",))
    assert write_in_batches(records, size=200) == 0
    assert write_records(records[:3] + tagged_records(random.Random(17), 5)) == 5  # only the new ones count
    after = grouped(LLMUsageByTag, ("tag",))
    assert after != before
    assert_tag_rollup_is_the_log()


def test_rebuild_restores_the_named_days_from_the_log():
    records = tagged_records(random.Random(18), 300)
    write_in_batches(records)
    first_day = DAY.date()
    second_day = first_day + timedelta(days=1)
    LLMUsageByTag.objects.filter(date=first_day).delete()
    LLMUsageByTag.objects.filter(date=second_day).update(cost=Decimal(123), top_ids=[], failure_ids=[])
    third = LLMUsageByTag.objects.filter(date=second_day + timedelta(days=1)).first()
    assert third is not None
    # Only the named day: the other stays wrong.
    assert rebuild_tags(start=first_day, end=first_day) == len(
        {t for r in records if r.created_at.date() == first_day for t in r.tags}
    )
    assert LLMUsageByTag.objects.filter(date=second_day, cost=Decimal(123)).exists()
    assert rebuild_coarse(start=second_day) > 0
    assert_tag_rollup_is_the_log()


def test_an_open_rebuild_keeps_the_days_before_the_log():
    """The retention job deleted a day's calls: its tag rows stay (they exist nowhere else)."""
    records = tagged_records(random.Random(19), 200)
    write_in_batches(records)
    first_day = DAY.date()
    kept = grouped(LLMUsageByTag, ("tag",))
    old = {key: value for key, value in kept.items() if key[0] == first_day}
    assert old
    LLMRequest.objects.filter(created_at__lt=DAY.replace(hour=0) + timedelta(days=1)).delete()
    LLMUsageByTag.objects.filter(date__gt=first_day).update(requests=0)
    rebuild_tags()
    after = grouped(LLMUsageByTag, ("tag",))
    assert {key: value for key, value in after.items() if key[0] == first_day} == old
    assert {key: value for key, value in after.items() if key[0] > first_day} == log_by_tag()


def test_the_migration_backfill_equals_the_rollup():
    write_in_batches(tagged_records(random.Random(20), 250))
    written = grouped(LLMUsageByTag, ("tag",))
    migration = importlib.import_module("apps.llm.migrations.0013_usage_by_tag")
    LLMUsageByTag.objects.all().delete()
    with connection.cursor() as cursor:
        for statement in migration.BACKFILL:
            cursor.execute(statement)
    assert grouped(LLMUsageByTag, ("tag",)) == written
    assert_tag_rollup_is_the_log()


def test_the_tag_rollup_is_never_picked_for_totals():
    assert tag_rollup() not in all_rollups()
    for size in range(len(DIMENSIONS) + 1):
        for dimensions in combinations(DIMENSIONS, size):
            assert rollup_for(dimensions).model is not LLMUsageByTag
    with pytest.raises(ValueError):
        rollup_for({"tag"})
