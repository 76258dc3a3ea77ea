"""The dashboard's two tables of single calls (the costliest, the latest failures): bounded reads of the raw log.

Everything else on the page comes from the rollups. These two read ten rows of the request log, through
the ids the coarse rollups keep when one covers the filters, else through an index chosen from the
counts the rollups already gave, and always under a statement timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import (
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
    Value,
)

from apps.llm.accounting.records import SUMMARY_COLUMNS, LoggedCall
from apps.llm.accounting.rollups import COSTLIEST, LATEST_FAILURES, CallList, rollup_for, tag_rollup
from apps.llm.dashboard.filters import DashboardFilters
from apps.llm.dashboard.results import TOP_ROWS, RawTable
from apps.llm.models import KEPT_CALLS, LLMRequest
from apps.llm.pricing.sheets import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS

logger = logging.getLogger(__name__)

_MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
_ZERO = Decimal(0)


#: Up to this many matching calls (known from the rollups) the raw-log tables read all of them
#: through the time/dimension indexes and sort; above it they first try the ordered index walk
#: (see most_expensive_calls and recent_failures).
RANGE_SCAN_MAX = 20_000
#: How far down the cost index the most-expensive probe looks (index entries and heap rows).
PROBE_ROWS = 20_000
#: Hard bound on each raw-log query; a timed-out table says so instead of hanging the page.
RAW_LOG_TIMEOUT_MS = 2_000


# -- the raw log: bounded ---------------------------------------------------------------------------


@contextmanager
def _bounded() -> Iterator[None]:
    """Run the enclosed queries under a statement timeout, put back afterwards when nested.

    ``set_config(..., true)`` is SET LOCAL: it ends with our transaction, but inside an enclosing
    one (ATOMIC_REQUESTS, tests) it would outlive the block, hence the restore.
    """
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
            [f"{RAW_LOG_TIMEOUT_MS}ms"],
        )
        ((before, _),) = cursor.fetchall()
        yield
        if nested:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])


def _raw_table(fetch: Callable[[], Iterable[Mapping[str, Any]]]) -> RawTable:
    try:
        with _bounded():
            rows = list(fetch())
    except OperationalError:  # the statement timeout (QueryCanceled)
        logger.warning("Dashboard request-log query cut short", exc_info=True)
        return RawTable(rows=[], timed_out=True)
    return RawTable(rows=[LoggedCall(**row) for row in rows])


def most_expensive_calls(filters: DashboardFilters, *, matching: int | None = None, limit: int = TOP_ROWS) -> RawTable:
    """The costliest calls of the period, ORDER BY cost DESC, id LIMIT ``limit``.

    Unless the filters cross users with models or features, a coarse rollup covers them and
    keeps each row's costliest calls: the answer is among those lists (a call deleted by the
    retention job since is missing from it, as from the log). Otherwise ``matching`` (the
    period's calls per the rollups) picks a plan on the log. Few matches: read them all through
    the created_at / dimension indexes and keep the top (``cost + 0`` keeps the planner off the
    cost index, which could walk through every costlier call of other days, models or users
    first). Many: probe the ``PROBE_ROWS`` costliest calls of the whole log (the partial index
    on -cost); if ``limit`` of them match, they are the answer, since every other match costs
    less. Otherwise (the matches are among the cheap calls) read the matches after all.
    """
    if matching == 0:
        return RawTable(rows=[])
    kept = _kept_calls(COSTLIEST, filters, limit)
    if kept is not None:
        return kept
    if matching is None or matching > RANGE_SCAN_MAX:
        probe = _probe_costliest(filters, limit)
        if probe.timed_out or len(probe.rows) == limit:
            return probe
    queryset = LLMRequest.objects.filter(filters.request_log_q(), cost__isnull=False)
    order = ExpressionWrapper(F("cost") + Value(_ZERO), output_field=_MONEY).desc()
    return _raw_table(lambda: queryset.order_by(order, "id").values(*SUMMARY_COLUMNS)[:limit])


def _kept_calls(kept: CallList, filters: DashboardFilters, limit: int) -> RawTable | None:
    """The first ``limit`` calls of ``kept`` over the period's rows of a rollup that covers the
    filters and keeps that list. None when no rollup does (the filters cross users and models),
    or when one of those calls is no longer in the log (the retention job deleted it): the
    next ones are not in the lists, so the caller searches the log instead.
    """
    if filters.tag:
        # The tag rollup keeps the lists per tag too; crossed with other dimensions, none covers.
        if filters.has_dimensions:
            return None
        rollup, dims, params = tag_rollup(), "tag = %s", [filters.tag]
    else:
        rollup = rollup_for(filters.dimension_names())
        dims, params = filters.dimensions_sql()
    if kept not in rollup.call_lists or limit > KEPT_CALLS:
        return None
    columns = ", ".join(f"r.{connection.ops.quote_name(c)}" for c in SUMMARY_COLUMNS)
    period = f"date BETWEEN %s AND %s AND {dims}"
    # Only the lists that can hold one of the answers are unnested (over 90 days, tens of thousands
    # of calls otherwise). A list is highest first, so its first value is its row's highest: the
    # ``limit`` highest first values are ``limit`` calls at or above the lowest of them (``bar``),
    # so every answer is at or above ``bar``, in a list that starts there. Fewer lists: no bar.
    sql = (
        f"WITH bar AS (SELECT {kept.values}[1] AS v FROM {rollup.table} WHERE {period} "
        f"ORDER BY 1 DESC NULLS LAST LIMIT 1 OFFSET %s), "
        f"kept AS (SELECT i FROM {rollup.table}, unnest({kept.values}, {kept.ids}) AS u(v, i) WHERE {period} "
        f"AND {kept.values}[1] >= coalesce((SELECT v FROM bar), {kept.values}[1]) ORDER BY v DESC, i LIMIT %s) "
        f"SELECT {columns} FROM kept LEFT JOIN {LLMRequest._meta.db_table} r ON r.id = kept.i "
        f"ORDER BY r.{connection.ops.quote_name(kept.log_value)} DESC, r.id"
    )
    in_period: list[Any] = [filters.start, filters.end, *params]

    def run() -> list[dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*in_period, max(limit - 1, 0), *in_period, limit])
            return [dict(zip(SUMMARY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    table = _raw_table(run)
    return None if any(call.id is None for call in table.rows) else table


def _probe_costliest(filters: DashboardFilters, limit: int) -> RawTable:
    dims, params = filters.dimensions_sql()
    columns = ", ".join(connection.ops.quote_name(c) for c in SUMMARY_COLUMNS)
    probed = columns
    if filters.tag:
        dims, params = f"{dims} AND tags @> ARRAY[%s]::varchar[]", [*params, filters.tag]
        probed += ", tags"
    sql = (
        f"SELECT {columns} FROM (SELECT {probed} FROM {LLMRequest._meta.db_table} WHERE cost IS NOT NULL "
        f"ORDER BY cost DESC LIMIT %s) top "
        f"WHERE created_at >= %s AND created_at < %s AND {dims} ORDER BY cost DESC, id LIMIT %s"
    )

    def run() -> list[dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [PROBE_ROWS, *filters.window, *params, limit])
            return [dict(zip(SUMMARY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    return _raw_table(run)


def recent_failures(filters: DashboardFilters, *, matching: int | None = None, limit: int = TOP_ROWS) -> RawTable:
    """The newest failed calls of the period, newest first (ties by id), LIMIT ``limit``.

    From the coarse rollups' lists of latest failures when one covers the filters. Otherwise,
    many matches: walk the (status, -created_at) index from the end of the period. Few (the
    rollups' failure count): those errors may be scattered among many others, so read just
    them through the best index for the filters and sort (``created_at + 0s`` forbids the walk).
    """
    if matching == 0:
        return RawTable(rows=[])
    kept = _kept_calls(LATEST_FAILURES, filters, limit)
    if kept is not None:
        return kept
    queryset = LLMRequest.objects.filter(filters.request_log_q(), status=LLMRequest.Status.ERROR)
    if matching is not None and matching <= RANGE_SCAN_MAX and filters.dimensions_q():
        order = ExpressionWrapper(F("created_at") + Value(timedelta(0)), output_field=DateTimeField()).desc()
    else:
        order = F("created_at").desc()
    return _raw_table(lambda: queryset.order_by(order, "id").values(*SUMMARY_COLUMNS)[:limit])
