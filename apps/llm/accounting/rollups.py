"""The daily rollups: sums of the request log at several groupings, kept exact by upserts.

``LLMUsageDaily`` groups calls by day, provider, model, user and feature. Its size grows with
the combinations in use (thousands of users x models x features is millions of rows a
quarter), so coarser rollups drop dimensions: ``LLMUsageByModel`` the user, ``LLMUsageByUser``
all but the user. A question about models or about users then reads tens or hundreds of rows
a day; ``rollup_for`` picks the first rollup that can answer it.

The coarse rollups also keep, per row, the ids of its ``KEPT_CALLS`` costliest calls and of
its latest failures (``CALL_LISTS``): those of any set of rows are among the union of their
lists, so "the most expensive calls of model X in the last 30 days" merges a few hundred short
lists instead of searching the log.

Every batch written to the log is added to all of them in the log's own transaction, so they
always agree with it and with one another. ``rebuild`` recomputes a coarse rollup for a range
of days (a backfill, or after rows were deleted by hand): its sums from the finest rollup,
its lists of calls from the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from uuid import UUID

from django.db import connections, transaction

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.models import (
    COUNTERS,
    HISTOGRAM_BUCKETS,
    KEPT_CALLS,
    LLMRequest,
    LLMUsageByModel,
    LLMUsageByUser,
    LLMUsageDaily,
    UsageSums,
    latency_bucket,
)

#: The counters summed on conflict (``COUNTERS``: the columns of ``UsageSums``).
SUMS = COUNTERS
#: The finest key after the day, as ``deltas`` builds it.
DIMENSIONS = ("provider", "model", "user_id", "feature")

#: How each dimension is read from a request-log row (a call without a resolved model counts
#: under the model it asked for).
LOG_COLUMNS = {
    "provider": "provider",
    "model": "coalesce(nullif(model, ''), model_requested)",
    "user_id": "user_id",
    "feature": "feature",
}

Key = tuple[Any, ...]
#: (value, id) of a call in a list.
Call = tuple[Any, UUID]


@dataclass(frozen=True)
class CallList:
    """Calls a coarse rollup row keeps: its ``KEPT_CALLS`` highest by a value, ties by id."""

    #: The model's two array columns: the values, and the request-log ids.
    values: str
    ids: str
    values_type: str
    #: Which request-log rows belong, and the value of one (SQL, for rebuilds).
    log_condition: str
    log_value: str
    #: A record's value, or None when it does not belong.
    value_of: Callable[[CallRecord], Any]

    def first(self, calls: Iterable[Call]) -> list[Call]:
        """The kept ones: highest value first, ties by id (as ``ORDER BY value DESC, id``)."""
        by_id = sorted(calls, key=lambda call: call[1])
        return sorted(by_id, key=lambda call: call[0], reverse=True)[:KEPT_CALLS]

    def merge_sql(self, table: str) -> list[str]:
        """SET clauses merging a row's list with EXCLUDED's (one ORDER BY: the two arrays stay aligned)."""
        merged = (
            f"unnest({table}.{self.values} || EXCLUDED.{self.values}, {table}.{self.ids} || EXCLUDED.{self.ids})"
            f" AS u(v, i) ORDER BY v DESC, i LIMIT {KEPT_CALLS}"
        )
        return [f"{self.values} = ARRAY(SELECT v FROM {merged})", f"{self.ids} = ARRAY(SELECT i FROM {merged})"]


CALL_LISTS = (
    CallList("top_costs", "top_ids", "numeric[]", "cost IS NOT NULL", "cost", lambda r: r.cost),
    CallList(
        "failure_times",
        "failure_ids",
        "timestamptz[]",
        f"status = '{ERROR}'",
        "created_at",
        lambda r: r.created_at if r.status == ERROR else None,
    ),
)
COSTLIEST, LATEST_FAILURES = CALL_LISTS


@dataclass(frozen=True)
class Rollup:
    """One rollup table: its model and the columns of its key after the day."""

    model: type[UsageSums]
    dimensions: tuple[str, ...]

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def constraint(self) -> str:
        (unique,) = self.model._meta.constraints
        return unique.name

    @property
    def call_lists(self) -> tuple[CallList, ...]:
        """The lists of calls this rollup keeps (the finest keeps none)."""
        columns = {f.name for f in self.model._meta.fields}
        return tuple(kept for kept in CALL_LISTS if kept.ids in columns)

    def covers(self, dimensions: Iterable[str]) -> bool:
        return set(dimensions) <= set(self.dimensions)


@cache
def all_rollups() -> tuple[Rollup, ...]:
    """In the order ``rollup_for`` tries them; the finest (``LLMUsageDaily``) last: it covers everything.

    Per model and feature first: a site has tens of those a day, and often more active users.
    """
    return (
        Rollup(LLMUsageByModel, ("provider", "model", "feature")),
        Rollup(LLMUsageByUser, ("user_id",)),
        Rollup(LLMUsageDaily, DIMENSIONS),
    )


def rollup_for(dimensions: Iterable[str]) -> Rollup:
    """The first (smallest) rollup that can group or filter by every one of ``dimensions``."""
    dimensions = set(dimensions)
    unknown = dimensions - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"no rollup has the dimensions {sorted(unknown)}; they are {DIMENSIONS}")
    return next(r for r in all_rollups() if r.covers(dimensions))


def _empty() -> dict[str, Any]:
    return dict.fromkeys(SUMS, 0) | {"latency_histogram": [0] * HISTOGRAM_BUCKETS} | {k.ids: [] for k in CALL_LISTS}


def deltas(records: Iterable[CallRecord]) -> dict[Key, dict[str, Any]]:
    """Per (day, provider, model, user, feature): the sums a batch of records adds, and its lists."""
    sums: dict[Key, dict[str, Any]] = defaultdict(_empty)
    for r in records:
        d = sums[(r.created_at.date(), r.provider, r.model or r.requested_model, r.user_id, r.feature)]
        d["requests"] += 1
        d["successes"] += r.status == SUCCESS
        d["failures"] += r.status == ERROR
        d["refusals"] += r.status == REFUSED
        d["cache_hits"] += r.cached
        if not r.cached:  # a hit spent no tokens; it is counted in saved_cost
            d["prompt_tokens"] += r.usage.prompt_tokens
            d["completion_tokens"] += r.usage.completion_tokens
            d["cached_tokens"] += r.usage.cached_tokens
            d["reasoning_tokens"] += r.usage.reasoning_tokens
            d["total_tokens"] += r.usage.total_tokens
        d["cost"] += r.cost or 0
        d["provider_cost"] += r.provider_cost or 0
        d["saved_cost"] += r.saved_cost or 0
        d["latency_ms_sum"] += round(r.latency_ms)
        d["unpriced"] += r.status == SUCCESS and r.cost is None
        d["estimated"] += r.usage_estimated or r.price_estimated
        if r.cost is not None and r.provider_cost is not None:
            d["reported_calls"] += 1
            d["reported_cost"] += r.cost
            d["reported_provider_cost"] += r.provider_cost
        d["latency_histogram"][latency_bucket(r.latency_ms)] += 1
        for kept in CALL_LISTS:
            value = kept.value_of(r)
            if value is not None:
                d[kept.ids].append((value, r.id))
    for d in sums.values():
        for kept in CALL_LISTS:
            d[kept.ids] = kept.first(d[kept.ids])
    return sums


def project(fine: dict[Key, dict[str, Any]], dimensions: tuple[str, ...]) -> dict[Key, dict[str, Any]]:
    """``deltas`` summed over the dimensions a coarser rollup does not have."""
    if dimensions == DIMENSIONS:
        return fine
    positions = [1 + DIMENSIONS.index(d) for d in dimensions]
    coarse: dict[Key, dict[str, Any]] = defaultdict(_empty)
    for key, sums in fine.items():
        into = coarse[(key[0], *(key[i] for i in positions))]
        for name in SUMS:
            into[name] += sums[name]
        into["latency_histogram"] = [
            a + b for a, b in zip(into["latency_histogram"], sums["latency_histogram"], strict=True)
        ]
        for kept in CALL_LISTS:
            into[kept.ids] = kept.first(into[kept.ids] + sums[kept.ids])
    return coarse


def _lock_order(key: Key) -> tuple:
    # None (no user) sorts first; comparing it with an id would raise.
    return tuple((value is not None, "" if value is None else value) for value in key)


def add(records: Iterable[CallRecord], *, cursor) -> None:
    """Add ``records`` to every rollup, atomically under concurrent writers (call inside a transaction)."""
    fine = deltas(records)
    if not fine:
        return
    # Same tables in the same order, keys sorted: two writers never lock rows in opposite orders.
    # One statement per table, sent together: one round trip.
    statements = [_upsert(rollup, project(fine, rollup.dimensions)) for rollup in reversed(all_rollups())]
    cursor.execute("; ".join(sql for sql, _ in statements), [p for _, params in statements for p in params])


def _upsert(rollup: Rollup, sums: dict[Key, dict[str, Any]]) -> tuple[str, list[Any]]:
    table = rollup.table
    columns = ["date", *rollup.dimensions, *SUMS, "latency_histogram"]
    placeholders = ["%s"] * len(columns)
    updates = [f"{c} = {table}.{c} + EXCLUDED.{c}" for c in SUMS]
    updates.append(
        f"latency_histogram = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) FROM "
        f"unnest({table}.latency_histogram, EXCLUDED.latency_histogram) AS u(a, b))"
    )
    for kept in rollup.call_lists:
        columns += [kept.values, kept.ids]
        placeholders += [f"%s::{kept.values_type}", "%s::uuid[]"]
        updates += kept.merge_sql(table)
    row = "(" + ", ".join(placeholders) + ")"
    params: list[Any] = []
    keys = sorted(sums, key=_lock_order)
    for key in keys:
        d = sums[key]
        params.extend([*key, *(d[c] for c in SUMS), d["latency_histogram"]])
        for kept in rollup.call_lists:
            params.extend([[value for value, _ in d[kept.ids]], [id_ for _, id_ in d[kept.ids]]])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * len(keys))} "
        f"ON CONFLICT ON CONSTRAINT {rollup.constraint} DO UPDATE SET {', '.join(updates)}",
        params,
    )


def rebuild(rollup: Rollup, *, start: date | None = None, end: date | None = None, using: str = "default") -> int:
    """Recompute ``rollup`` for ``start``..``end`` (inclusive; None: open); returns the rows written.

    The sums come from the finest rollup, the lists of calls from the request log (the finest
    rollup keeps none): a rebuild of many days reads those days of the log once per list.
    """
    finest = all_rollups()[-1]
    if rollup == finest:
        raise ValueError("the finest rollup is built from the request log, not from a rollup")
    days, params = _days_condition("date", start, end)
    key = ", ".join(["date", *rollup.dimensions])
    sums = ", ".join(f"sum({c})" for c in SUMS)
    # Element-wise sum of the histograms; a missing bucket (an empty array) counts 0.
    histogram = ", ".join(f"coalesce(sum(latency_histogram[{i}]), 0)" for i in range(1, HISTOGRAM_BUCKETS + 1))
    # Empty lists first; _rebuild_call_list fills them.
    lists = [column for kept in rollup.call_lists for column in (kept.values, kept.ids)]
    list_columns, empty_lists = "".join(f", {c}" for c in lists), ", '{}'" * len(lists)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(f"DELETE FROM {rollup.table} WHERE {days}", params)
        cursor.execute(
            f"INSERT INTO {rollup.table} ({key}, {', '.join(SUMS)}, latency_histogram{list_columns}) "
            f"SELECT {key}, {sums}, ARRAY[{histogram}]::bigint[]{empty_lists} FROM {finest.table} "
            f"WHERE {days} GROUP BY {key}",
            params,
        )
        written = cursor.rowcount
        for kept in rollup.call_lists:
            _rebuild_call_list(rollup, kept, start, end, cursor)
    return written


def _days_condition(
    column: str, start: date | None, end: date | None, *, as_time: bool = False
) -> tuple[str, list[Any]]:
    """``column`` within the UTC days ``start``..``end``: a date, or (``as_time``) a timestamp, half-open."""
    parts, params = ["TRUE"], []
    if start is not None:
        parts.append(f"{column} >= %s")
        params.append(datetime.combine(start, time.min, UTC) if as_time else start)
    if end is not None:
        parts.append(f"{column} < %s" if as_time else f"{column} <= %s")
        params.append(datetime.combine(end + timedelta(days=1), time.min, UTC) if as_time else end)
    return " AND ".join(parts), params


def _rebuild_call_list(rollup: Rollup, kept: CallList, start: date | None, end: date | None, cursor) -> None:
    calls, params = _days_condition("created_at", start, end, as_time=True)
    day = "(created_at AT TIME ZONE 'UTC')::date"
    log_key = ", ".join(LOG_COLUMNS[d] for d in rollup.dimensions)
    named = ", ".join(f"{LOG_COLUMNS[d]} AS {d}" for d in rollup.dimensions)
    group = ", ".join(["day", *rollup.dimensions])
    match = " AND ".join(f"r.{d} IS NOT DISTINCT FROM t.{d}" for d in rollup.dimensions)
    cursor.execute(
        f"""
        UPDATE {rollup.table} r SET {kept.values} = t.vs, {kept.ids} = t.ids
        FROM (SELECT {group}, array_agg(v ORDER BY v DESC, id) AS vs, array_agg(id ORDER BY v DESC, id) AS ids
              FROM (SELECT {day} AS day, {named}, {kept.log_value} AS v, id,
                           row_number() OVER (PARTITION BY {day}, {log_key} ORDER BY {kept.log_value} DESC, id) AS rank
                    FROM {LLMRequest._meta.db_table} WHERE {kept.log_condition} AND {calls}) ranked
              WHERE rank <= {KEPT_CALLS} GROUP BY {group}) t
        WHERE r.date = t.day AND {match}
        """,
        params,
    )


def rebuild_coarse(*, start: date | None = None, end: date | None = None, using: str = "default") -> int:
    """``rebuild`` every rollup but the finest; rows written."""
    return sum(rebuild(r, start=start, end=end, using=using) for r in all_rollups()[:-1])
