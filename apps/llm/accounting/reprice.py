"""Repricing past calls: their cost recomputed from the price history, the log and the rollups corrected.

A price that was wrong when a call was made (a catalog error, a component not charged then)
is fixed by a new ``ModelPrice`` row valid from the right time, or a corrected row; then
``reprice`` recomputes the cost of every answered, uncached call in a range of days from the
token counts stored on its row and the prices in force at its ``created_at`` (or the
corrected row's), and writes what changed: ``cost``, ``price_id`` and ``cost_breakdown`` of
the rows, and the rollups by exactly the difference.

Everything happens in one transaction. Rows are read in batches and the new values staged in
a temporary table; the finest rollup is adjusted by set-based updates of the per-key
differences, and the coarse rollups are rebuilt from it for the days that changed. Live
writers add to the rollups too, so the rollup tables are locked (in the order writers use
them) only while the changes are applied, not while costs are computed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.models import Q

from apps.llm.accounting.records import SUCCESS, USAGE_COLUMNS
from apps.llm.accounting.rollups import LOG_COLUMNS as ROLLUP_KEY
from apps.llm.accounting.rollups import all_rollups, rebuild_coarse
from apps.llm.costs import calculate_cost
from apps.llm.models import LLMRequest
from apps.llm.pricing.history import PriceHistory, load_price_history
from apps.llm.pricing.sheets import plain_decimal
from apps.llm.types import Usage

#: Rows read per query.
BATCH_SIZE = 2000
_STAGED = "llm_reprice_staged"
_DELTAS = "llm_reprice_deltas"


class RepriceError(Exception):
    """The repricing cannot be applied (nothing was written)."""


@dataclass(frozen=True)
class RepriceScope:
    """Which calls: answered, not from the cache, made in ``since``..``until`` (UTC days, inclusive)."""

    since: date
    until: date | None = None
    #: Calls that asked for or were answered by this model.
    model: str | None = None
    #: Price every call of this row's model with this row, instead of the history.
    price_id: int | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.until < self.since:
            raise ValueError(f"--until {self.until} is before --since {self.since}")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, UTC)

    @property
    def end(self) -> datetime | None:
        return None if self.until is None else datetime.combine(self.until + timedelta(days=1), time.min, UTC)


@dataclass
class ModelChange:
    """One model's calls in a repricing."""

    examined: int = 0
    repriced: int = 0
    before: Decimal = Decimal(0)
    after: Decimal = Decimal(0)


@dataclass
class RepriceReport:
    """What a repricing found and (unless ``dry_run``) changed."""

    scope: RepriceScope
    dry_run: bool
    #: Calls in scope: answered, uncached, in the days and of the model asked for.
    examined: int = 0
    #: Calls whose cost changed.
    repriced: int = 0
    #: Rows written: cost, price or breakdown changed (an old row gains the breakdown it lacked).
    updated: int = 0
    #: Calls without a price in force at their time: left as they were.
    no_price: int = 0
    #: With ``price_id``: calls of other models, left as they were.
    other_models: int = 0
    #: The cost of the repriced calls, before and after (a call without a price counts 0 before).
    before: Decimal = Decimal(0)
    after: Decimal = Decimal(0)
    models: dict[str, ModelChange] = field(default_factory=lambda: defaultdict(ModelChange))

    def format(self) -> str:
        scope = self.scope
        days = f"{scope.since}..{scope.until or 'now'}"
        head = "Dry run (nothing written): " if self.dry_run else ""
        lines = [
            f"{head}calls {days}"
            + (f", model {scope.model}" if scope.model else "")
            + (f", prices of ModelPrice #{scope.price_id}" if scope.price_id else ", prices in force at each call"),
            f"  examined {self.examined}, repriced {self.repriced}, rows updated {self.updated}, "
            f"without a price then {self.no_price}" + (f", other models {self.other_models}" if scope.price_id else ""),
            f"  total of the repriced calls: ${plain_decimal(self.before)} -> ${plain_decimal(self.after)} "
            f"({_signed(self.after - self.before)})",
        ]
        for name, change in sorted(self.models.items(), key=lambda item: -abs(item[1].after - item[1].before)):
            if change.repriced:
                lines.append(
                    f"  {name}: {change.repriced} of {change.examined} calls, ${plain_decimal(change.before)} -> "
                    f"${plain_decimal(change.after)} ({_signed(change.after - change.before)})"
                )
        return "\n".join(lines)


def _signed(amount: Decimal) -> str:
    return ("+$" if amount >= 0 else "-$") + plain_decimal(abs(amount))


@dataclass(frozen=True)
class _Change:
    id: Any
    cost: Decimal
    price_id: int | None
    cost_breakdown: list[dict[str, str]]
    price_estimated: bool


#: The columns of a log row that repricing reads.
_FIELDS: tuple[str, ...] = (
    *("id", "created_at", "provider", "model", "model_requested", "cost", "price_id", "cost_breakdown"),
    *("price_estimated", *USAGE_COLUMNS),
)


def reprice(
    scope: RepriceScope, *, dry_run: bool = False, using: str = "default", batch_size: int = BATCH_SIZE
) -> RepriceReport:
    """Recompute the cost of the calls in ``scope``; write the changes unless ``dry_run``.

    Raises ``RepriceError`` (and writes nothing) when the price row does not exist or the
    rollups are missing a row for a call being repriced (rebuild them first).
    """
    report = RepriceReport(scope=scope, dry_run=dry_run)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One repricing at a time: two would both apply their differences to the rollups.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('llm.reprice'))")
        try:
            history = load_price_history(scope.start, scope.end, corrected_id=scope.price_id)
        except LookupError as exc:
            raise RepriceError(str(exc)) from None
        if not dry_run:
            _create_staging(cursor)
        for batch in _batches(scope, using, batch_size):
            changes = [change for row in batch if (change := _reprice_row(row, history, report)) is not None]
            if changes and not dry_run:
                _stage(cursor, changes)
        if report.updated and not dry_run:
            _apply(cursor, using)
        if not dry_run:
            # ON COMMIT DROP does not fire when this runs inside an outer transaction.
            cursor.execute(f"DROP TABLE IF EXISTS {_STAGED}, {_DELTAS}")
    return report


def _batches(scope: RepriceScope, using: str, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """The rows in scope, by (created_at, id) pages: each page one indexed range read."""
    rows = LLMRequest.objects.using(using).filter(status=SUCCESS, cached=False, created_at__gte=scope.start)
    if scope.end is not None:
        rows = rows.filter(created_at__lt=scope.end)
    if scope.model:
        rows = rows.filter(Q(model=scope.model) | Q(model_requested=scope.model))
    rows = rows.order_by("created_at", "id").values(*_FIELDS)
    after: tuple[datetime, Any] | None = None
    while True:
        page = rows
        if after is not None:
            page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        after = (batch[-1]["created_at"], batch[-1]["id"])


def _reprice_row(row: dict[str, Any], history: PriceHistory, report: RepriceReport) -> _Change | None:
    """The new values of a row, or None when nothing changes; counts it in ``report``."""
    served = row["model"] or row["model_requested"]
    # As the client prices a call: the served model's price, else the requested one's.
    pricing = history.get(served, row["provider"], row["created_at"]) or history.get(
        row["model_requested"], row["provider"], row["created_at"]
    )
    corrected = history.corrected
    if corrected is not None and (pricing is None or pricing.price_id != corrected.price_id):
        report.other_models += 1
        return None
    report.examined += 1
    per_model = report.models[served]
    per_model.examined += 1
    if pricing is None:
        report.no_price += 1
        return None
    breakdown = calculate_cost(pricing, Usage(**{name: row[name] for name in USAGE_COLUMNS}))
    lines = breakdown.lines()
    old_cost = row["cost"]
    if (old_cost, row["price_id"], row["cost_breakdown"], row["price_estimated"]) == (
        breakdown.total,
        pricing.price_id,
        lines,
        False,
    ):
        return None
    report.updated += 1
    if old_cost != breakdown.total:
        report.repriced += 1
        per_model.repriced += 1
        for totals in (report, per_model):
            totals.before += old_cost or 0
            totals.after += breakdown.total
    return _Change(row["id"], breakdown.total, pricing.price_id, lines, False)


def _create_staging(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {_STAGED}, {_DELTAS}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {_STAGED} (id uuid PRIMARY KEY, cost numeric NOT NULL, price_id bigint, "
        f"cost_breakdown jsonb NOT NULL, price_estimated boolean NOT NULL) ON COMMIT DROP"
    )


def _stage(cursor, changes: list[_Change]) -> None:
    values = ", ".join(["(%s, %s, %s, %s::jsonb, %s)"] * len(changes))
    params: list[Any] = []
    for change in changes:
        params += [change.id, change.cost, change.price_id, json.dumps(change.cost_breakdown), change.price_estimated]
    cursor.execute(f"INSERT INTO {_STAGED} VALUES {values}", params)


def _apply(cursor, using: str) -> None:
    """Write the staged values: the finest rollup by the differences, the log, then the coarse rollups."""
    log = LLMRequest._meta.db_table
    rollups = all_rollups()
    finest = rollups[-1]
    # Writers take row locks in the rollups finest first (rollups.add): the same order here.
    for rollup in reversed(rollups):
        cursor.execute(f"LOCK TABLE {rollup.table} IN SHARE ROW EXCLUSIVE MODE")
    key = ", ".join(f"{ROLLUP_KEY[d]} AS {d}" for d in finest.dimensions)
    # What each key of the finest rollup gains, as rollups.deltas counts a record: the cost;
    # a call priced now that had none is no longer unpriced; a call that had an estimated
    # price no longer has one; calls with the provider's own cost have ours compared with it.
    difference = "n.cost - coalesce(r.cost, 0)"
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {_DELTAS} ON COMMIT DROP AS
        SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, {key},
               sum({difference}) AS cost,
               count(*) FILTER (WHERE r.cost IS NULL) AS unpriced,
               count(*) FILTER (WHERE r.price_estimated AND NOT n.price_estimated AND NOT r.usage_estimated)
                   AS estimated,
               count(*) FILTER (WHERE r.cost IS NULL AND r.provider_cost IS NOT NULL) AS reported_calls,
               coalesce(sum({difference}) FILTER (WHERE r.provider_cost IS NOT NULL), 0) AS reported_cost,
               count(*) FILTER (WHERE n.cost IS DISTINCT FROM r.cost) AS costs_changed
        FROM {_STAGED} n JOIN {log} r ON r.id = n.id
        GROUP BY 1, {", ".join(str(i) for i in range(2, 2 + len(finest.dimensions)))}
        """
    )
    # Keys where only breakdowns were filled in: nothing to add, no list of costliest calls to redo.
    cursor.execute(f"DELETE FROM {_DELTAS} WHERE costs_changed = 0 AND estimated = 0")
    cursor.execute(f"SELECT count(*), min(day), max(day) FROM {_DELTAS}")
    keys, _, _ = cursor.fetchone()
    match = " AND ".join(["d.date = t.day", *(f"d.{c} IS NOT DISTINCT FROM t.{c}" for c in finest.dimensions)])
    cursor.execute(
        f"""
        UPDATE {finest.table} d SET cost = d.cost + t.cost, unpriced = d.unpriced - t.unpriced,
               estimated = d.estimated - t.estimated, reported_calls = d.reported_calls + t.reported_calls,
               reported_cost = d.reported_cost + t.reported_cost
        FROM {_DELTAS} t WHERE {match}
        """
    )
    if cursor.rowcount != keys:
        raise RepriceError(
            f"the daily rollup lacks {keys - cursor.rowcount} of the {keys} (day, model, user, feature) rows "
            "of the calls to reprice: it is out of step with the request log; rebuild it first"
        )
    cursor.execute(
        f"UPDATE {log} r SET cost = n.cost, price_id = n.price_id, cost_breakdown = n.cost_breakdown, "
        f"price_estimated = n.price_estimated FROM {_STAGED} n WHERE r.id = n.id"
    )
    # The coarse rollups (and their lists of costliest calls) from the finest and the log, for
    # each run of consecutive days that changed.
    cursor.execute(f"SELECT DISTINCT day FROM {_DELTAS} ORDER BY day")
    for first, last in _runs([row[0] for row in cursor.fetchall()]):
        rebuild_coarse(start=first, end=last, using=using)


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) ranges."""
    runs: list[list[date]] = []
    for day in days:
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(first, last) for first, last in runs]
