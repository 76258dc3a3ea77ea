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

``LLMUsageByTag`` (``tag_rollup``) stands beside them: a call counts once under each of its
tags, so its rows do not add up to totals and it has no other dimension; ``rollup_for`` never
picks it. Its sums exist nowhere else: it is rebuilt from the request log (``rebuild_tags``).

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
from itertools import pairwise
from typing import Any
from uuid import UUID

from django.db import connections, transaction

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.models import (
    COUNTERS,
    HISTOGRAM_BUCKETS,
    KEPT_CALLS,
    LATENCY_BUCKETS_MS,
    LLMRequest,
    LLMUsageByModel,
    LLMUsageByTag,
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


@cache
def tag_rollup() -> Rollup:
    """The rollup per day and tag: not one of ``all_rollups`` (its rows overlap; see the module)."""
    return Rollup(LLMUsageByTag, ("tag",))


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
        _count(sums[(r.created_at.date(), r.provider, r.model or r.requested_model, r.user_id, r.feature)], r)
    return _kept_first(sums)


def tag_deltas(records: Iterable[CallRecord]) -> dict[Key, dict[str, Any]]:
    """Per (day, tag): the sums a batch adds to ``tag_rollup``; a call once under each of its tags."""
    sums: dict[Key, dict[str, Any]] = defaultdict(_empty)
    for r in records:
        for tag in dict.fromkeys(r.tags):  # a tag given twice still counts the call once
            _count(sums[(r.created_at.date(), tag)], r)
    return _kept_first(sums)


def _count(d: dict[str, Any], r: CallRecord) -> None:
    """Add one record to the sums of its key (the arithmetic every rollup shares)."""
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


def _kept_first(sums: dict[Key, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
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
    records = list(records)  # read twice: the rollups by key, then by tag
    fine = deltas(records)
    if not fine:
        return
    # Same tables in the same order, keys sorted: two writers never lock rows in opposite orders.
    # One statement per table, sent together: one round trip.
    statements = [_upsert(rollup, project(fine, rollup.dimensions)) for rollup in reversed(all_rollups())]
    # The tags last: a repricing locks the other tables (finest first) and then rebuilds this one,
    # so no writer can be between this upsert and those tables while it does.
    tagged = tag_deltas(records)
    if tagged:
        statements.append(_upsert(tag_rollup(), tagged))
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
    """``rebuild`` every rollup but the finest, and ``rebuild_tags``; rows written."""
    coarse = sum(rebuild(r, start=start, end=end, using=using) for r in all_rollups()[:-1])
    return coarse + rebuild_tags(start=start, end=end, using=using)


#: Each counter of a rollup row as an aggregate over request-log rows: what ``_count`` adds per record.
_NOT_CACHED = "FILTER (WHERE NOT cached)"
LOG_SUMS: dict[str, str] = {
    "requests": "count(*)",
    "successes": f"count(*) FILTER (WHERE status = '{SUCCESS}')",
    "failures": f"count(*) FILTER (WHERE status = '{ERROR}')",
    "cache_hits": "count(*) FILTER (WHERE cached)",
    **{
        c: f"coalesce(sum({c}) {_NOT_CACHED}, 0)"
        for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
    },
    **{c: f"coalesce(sum({c}), 0)" for c in ("cost", "provider_cost", "saved_cost")},
    # round() of a float8 rounds half to even, as Python's round() does.
    "latency_ms_sum": "coalesce(sum(round(latency_ms)::bigint), 0)",
    "refusals": f"count(*) FILTER (WHERE status = '{REFUSED}')",
    "unpriced": f"count(*) FILTER (WHERE status = '{SUCCESS}' AND cost IS NULL)",
    "estimated": "count(*) FILTER (WHERE usage_estimated OR price_estimated)",
    "reported_calls": "count(*) FILTER (WHERE cost IS NOT NULL AND provider_cost IS NOT NULL)",
    "reported_cost": "coalesce(sum(cost) FILTER (WHERE provider_cost IS NOT NULL), 0)",
    "reported_provider_cost": "coalesce(sum(provider_cost) FILTER (WHERE cost IS NOT NULL), 0)",
}
assert set(LOG_SUMS) == set(SUMS), "a counter without its SQL: rebuild_tags would drop it"


def _log_histogram() -> str:
    """The latency histogram of request-log rows, bucketed as ``latency_bucket`` does."""
    bounds = [None, *LATENCY_BUCKETS_MS, None]
    buckets = []
    for low, high in pairwise(bounds):
        parts = [f"latency_ms > {low}"] if low is not None else []
        parts += [f"latency_ms <= {high}"] if high is not None else []
        buckets.append(f"count(*) FILTER (WHERE {' AND '.join(parts)})")
    return f"ARRAY[{', '.join(buckets)}]::bigint[]"


def _tagged_calls(condition: str) -> str:
    """Request-log rows matching ``condition``, once per distinct tag (``tag``) and with their UTC ``day``."""
    return (
        f"SELECT l.*, (l.created_at AT TIME ZONE 'UTC')::date AS day, t.tag "
        f"FROM {LLMRequest._meta.db_table} l CROSS JOIN LATERAL (SELECT DISTINCT unnest(l.tags) AS tag) t "
        f"WHERE l.tags <> '{{}}' AND {condition}"
    )


def rebuild_tags(*, start: date | None = None, end: date | None = None, using: str = "default") -> int:
    """Recompute ``tag_rollup`` for ``start``..``end`` (inclusive) from the request log; rows written.

    Its sums exist nowhere else, so a day whose calls the retention job deleted cannot be
    rebuilt: an open ``start`` means the day of the oldest call still logged, and days before it
    keep their rows. (That day itself may have lost its first calls to retention: name the
    days to rebuild when it has.)
    """
    rollup = tag_rollup()
    log = LLMRequest._meta.db_table
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        if start is None:
            cursor.execute(f"SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM {log}")
            (start,) = cursor.fetchone()
            if start is None:  # nothing logged: nothing to rebuild, nothing to lose
                return 0
        days, params = _days_condition("date", start, end)
        calls, call_params = _days_condition("created_at", start, end, as_time=True)
        lists = [column for kept in rollup.call_lists for column in (kept.values, kept.ids)]
        empty_lists = ", '{}'" * len(lists)  # filled below
        cursor.execute(f"DELETE FROM {rollup.table} WHERE {days}", params)
        cursor.execute(
            f"INSERT INTO {rollup.table} (date, tag, {', '.join(SUMS)}, latency_histogram, {', '.join(lists)}) "
            f"SELECT day, tag, {', '.join(LOG_SUMS[c] for c in SUMS)}, {_log_histogram()}{empty_lists} "
            f"FROM ({_tagged_calls(calls)}) l GROUP BY day, tag",
            call_params,
        )
        written = cursor.rowcount
        for kept in rollup.call_lists:
            cursor.execute(
                f"""
                UPDATE {rollup.table} r SET {kept.values} = t.vs, {kept.ids} = t.ids
                FROM (SELECT day, tag, array_agg(v ORDER BY v DESC, id) AS vs, array_agg(id ORDER BY v DESC, id) AS ids
                      FROM (SELECT day, tag, {kept.log_value} AS v, id,
                                   row_number() OVER (PARTITION BY day, tag ORDER BY {kept.log_value} DESC, id) AS rank
                            FROM ({_tagged_calls(f"{kept.log_condition} AND {calls}")}) l) ranked
                      WHERE rank <= {KEPT_CALLS} GROUP BY day, tag) t
                WHERE r.date = t.day AND r.tag = t.tag
                """,
                call_params,
            )
    return written
