"""The cost and usage dashboard's figures: pure functions of ``DashboardFilters``.

Everything is computed from the daily rollups (``apps.llm.accounting.rollups``), whose size grows with
the combinations in use, not with the number of calls; each question reads the smallest
rollup that has its dimensions (per model and feature, per user, or the finest one when the
filters cross them). Only the two request tables (the most expensive calls, the latest
failures) read the raw log; both are LIMITed to a few rows inside the period, choose their
plan from the counts the rollups already gave, and run under a statement timeout, so a log
of tens of millions of rows cannot make the page hang.

A render costs a fixed number of queries whatever the period, each returning at most a row
per day and model: sums per day over the period and the one before it (the headline, the
daily charts, the latency histograms, the cost-accuracy counts), per model (the models table
and the cost-accuracy drifts: ``REPORTED_COUNTERS`` are summed with it), per day of the charted
models (the spend chart), two to five ranked ones (the filter choices; when filtered, also
the top users and features and the models of the whole period) and one for user labels, one for the budgets, and two or three that
fetch ten rows of the log.

Days are UTC dates: the rollups are keyed by ``created_at.date()`` of UTC timestamps.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from django.db.models import (
    Case,
    DecimalField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.llm.accounting.rollups import rollup_for
from apps.llm.dashboard.accuracy import cost_accuracy
from apps.llm.dashboard.calls import most_expensive_calls, recent_failures
from apps.llm.dashboard.filters import NO_USER, OTHER, DashboardFilters
from apps.llm.dashboard.results import (
    TOP_ROWS,
    BudgetUsage,
    DailySeries,
    Dashboard,
    FilterOptions,
    Totals,
    TraceRow,
    UsageRow,
    headline,
    user_label,
)
from apps.llm.models import (
    COUNTERS,
    HISTOGRAM_BUCKETS,
    SUMMARY_COUNTERS,
    Budget,
    BudgetSpend,
    LLMTrace,
    LLMUsageByTag,
)
from apps.llm.pricing.sheets import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS

if TYPE_CHECKING:
    # Installed with django-stubs, for type checking only (requirements-dev.txt).
    from django_stubs_ext import WithAnnotations

CHART_MODELS = 6
#: What the models table also sums for the cost-accuracy panel: our cost and the provider's
#: over the calls that have both (in the same query as the rest of each model's row).
REPORTED_COUNTERS = ("reported_calls", "reported_cost", "reported_provider_cost")
#: Values each filter dropdown offers (the biggest spenders of the period).
MAX_CHOICES = 300


class CurrentSpend(TypedDict):
    """What ``with_current_spend`` annotates each budget with."""

    current_spent: Decimal
    current_reserved: Decimal
    current_period_start: date


if TYPE_CHECKING:
    BudgetWithSpend = WithAnnotations[Budget, CurrentSpend]


_MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
_ZERO = Decimal(0)


# -- queries --------------------------------------------------------------------------------------


def _period_rows(
    filters: DashboardFilters, group: tuple[str, ...], aggregates: dict[str, Any], *, since: date | None = None
) -> QuerySet:
    """Rollup sums per ``group`` from ``since`` (default: the period start) to the end, from the
    first rollup that has the grouped and filtered dimensions (the tag rollup under a tag filter)."""
    rows: QuerySet[Any]
    if filters.tag:
        if set(group) - {"date"} or filters.has_dimensions:
            raise ValueError(f"the tag rollup has days and tags only, not {sorted(set(group) - {'date'})}")
        rows = LLMUsageByTag.objects.filter(tag=filters.tag)
    else:
        rollup = rollup_for({*(c for c in group if c != "date"), *filters.dimension_names()})
        rows = rollup.model._default_manager.filter(filters.dimensions_q())
    return (
        rows.filter(date__gte=since or filters.start, date__lte=filters.end)
        .values(*group)
        .annotate(**aggregates)
        .order_by()
    )


def daily_totals(filters: DashboardFilters) -> tuple[Totals, Totals, dict[date, Totals]]:
    """Totals of the period, of the one before it, and of each day of the period (with histograms)."""
    aggregates: dict[str, Any] = {name: Sum(name) for name in COUNTERS}
    # Element-wise sums of the histogram arrays: one column per bucket (SUM(h[i])).
    aggregates |= {f"h{i}": Sum(f"latency_histogram__{i}") for i in range(HISTOGRAM_BUCKETS)}
    current, previous, per_day = Totals(), Totals(), {}
    for row in _period_rows(filters, ("date",), aggregates, since=filters.previous().start):
        totals = Totals(
            sums={name: row[name] or 0 for name in COUNTERS},
            latency_histogram=[row[f"h{i}"] or 0 for i in range(HISTOGRAM_BUCKETS)],
        )
        if row["date"] < filters.start:
            previous.add(totals)
        else:
            current.add(totals)
            per_day[row["date"]] = totals
    return current, previous, per_day


def _model_label(provider: str, model: str, ambiguous: set[str]) -> str:
    return f"{model} ({provider})" if model in ambiguous else model


def model_rows(filters: DashboardFilters) -> list[UsageRow]:
    """Every model of the period, the biggest spenders first (none under a tag: see ``not_narrowed``)."""
    if filters.tag:
        return []
    counters = (*SUMMARY_COUNTERS, *REPORTED_COUNTERS)
    rows = list(_period_rows(filters, ("provider", "model"), {name: Sum(name) for name in counters}))
    rows.sort(key=lambda r: (-r["cost"], -r["requests"], r["provider"], r["model"]))
    ambiguous = {m for m, n in Counter(r["model"] for r in rows).items() if n > 1}
    return [
        _breakdown_row(
            _model_label(r["provider"], r["model"], ambiguous),
            filters.narrowed(provider=r["provider"], model=r["model"]),
            r,
        )
        for r in rows
    ]


def spend_by_model(
    filters: DashboardFilters, models: list[UsageRow], day_cost: Mapping[date, Decimal]
) -> list[tuple[str, DashboardFilters | None, list[Decimal]]]:
    """Spend per day of the top ``CHART_MODELS`` models, then "Other" (the rest of each day's spend)."""
    if filters.tag:  # no model in the tag rollup: the tag's own spend, as one series
        return [(f"Tag {filters.tag}", filters, [day_cost.get(d, _ZERO) for d in filters.day_list()])]
    top = models[:CHART_MODELS]
    if not top:
        return []
    days = filters.day_list()
    only_top = Q()
    for row in top:
        only_top |= Q(provider=row.filters.provider, model=row.filters.model)
    cost: dict[tuple[str, str], dict[date, Decimal]] = defaultdict(dict)
    for r in _period_rows(filters, ("date", "provider", "model"), {"spent": Sum("cost")}).filter(only_top):
        cost[(r["provider"], r["model"])][r["date"]] = r["spent"]
    series: list[tuple[str, DashboardFilters | None, list[Decimal]]] = [
        (row.label, row.filters, [cost[(row.filters.provider, row.filters.model)].get(d, _ZERO) for d in days])
        for row in top
    ]
    if len(models) > CHART_MODELS:
        series.append(
            (OTHER, None, [day_cost.get(d, _ZERO) - sum((s[2][i] for s in series), _ZERO) for i, d in enumerate(days)])
        )
    return series


def daily_series(
    filters: DashboardFilters,
    per_day: Mapping[date, Totals],
    cost_by_model: list[tuple[str, DashboardFilters | None, list[Decimal]]],
) -> DailySeries:
    days = filters.day_list()
    day_totals = [per_day.get(d) or Totals() for d in days]
    return DailySeries(
        days=days,
        requests=[t.requests for t in day_totals],
        failures=[t.failures for t in day_totals],
        refusals=[t.refusals for t in day_totals],
        cost=[t.cost for t in day_totals],
        input_tokens=[t.input_tokens for t in day_totals],
        cached_tokens=[t.cached_tokens for t in day_totals],
        output_tokens=[t.completion_tokens for t in day_totals],
        p50_ms=[t.p50_ms for t in day_totals],
        p95_ms=[t.p95_ms for t in day_totals],
        cost_by_model=cost_by_model,
    )


@dataclass(frozen=True)
class Breakdowns:
    users: list[UsageRow]
    features: list[UsageRow]
    options: FilterOptions
    tags: list[UsageRow]


def ranked(group: str, filters: DashboardFilters, limit: int) -> list[dict[str, Any]]:
    """Sums per ``group`` over the filtered period, the biggest spenders first.

    Read from the smallest rollup that has the column and every filtered dimension: the
    per-user or per-model one unless the filters cross the two.
    """
    rollup = rollup_for({group, *filters.dimension_names()})
    return list(
        rollup.model._default_manager.filter(filters.rollup_q())
        .values(group)
        .annotate(**{name: Sum(name) for name in SUMMARY_COUNTERS})
        .order_by("-cost", "-requests", group)[:limit]
    )


def breakdowns(filters: DashboardFilters, models: list[UsageRow], limit: int = TOP_ROWS) -> Breakdowns:
    """Spend by user and by feature, and the filter choices (``models``: ``model_rows(filters)``).

    The choices are the period's biggest spenders whatever the filters, so that picking a
    model still offers the others.
    """
    from django.contrib.auth import get_user_model

    everything = filters.period_only()
    all_users, all_features = ranked("user_id", everything, MAX_CHOICES), ranked("feature", everything, MAX_CHOICES)
    if filters == everything:  # the top rows are the first choices
        top_users, top_features = all_users[:limit], all_features[:limit]
    elif filters.tag:  # not in the tag rollup (see not_narrowed); the choices still are
        top_users, top_features = [], []
        models = model_rows(everything)
    else:
        top_users, top_features = ranked("user_id", filters, limit), ranked("feature", filters, limit)
        models = model_rows(everything)
    user_ids = [r["user_id"] for r in all_users]
    feature_choices = [r["feature"] for r in all_features]

    known = {
        u["id"]: u
        for u in get_user_model()
        .objects.filter(pk__in={*user_ids, *(r["user_id"] for r in top_users)})
        .values("id", "email", "username")
    }

    def label(user_id: int | None) -> str:
        user = known.get(user_id, {})
        return user_label(user_id, user.get("email"), user.get("username"))

    users = [
        _breakdown_row(
            label(r["user_id"]), filters.narrowed(user_id=r["user_id"], without_user=r["user_id"] is None), r
        )
        for r in top_users
        if r["requests"]
    ]
    features = [
        _breakdown_row(r["feature"] or "(no feature)", filters.narrowed(feature=r["feature"]), r)
        for r in top_features
        if r["requests"]
    ]
    model_choices = [(row.filters.provider, row.filters.model) for row in models[:MAX_CHOICES]]
    # The period's tags: the choices, and (unless a tag or another filter is set) the top rows.
    all_tags = ranked_tags(everything, MAX_CHOICES)
    if filters.has_dimensions:
        top_tags = []
    elif filters.tag:
        top_tags = [r for r in all_tags if r["tag"] == filters.tag] or ranked_tags(filters, 1)
    else:
        top_tags = all_tags[:limit]
    options = FilterOptions(
        providers=sorted({p for p, _ in model_choices}),
        models=sorted(model_choices, key=lambda pm: pm[1]),
        features=sorted(feature_choices),
        tags=sorted(r["tag"] for r in all_tags),
        # Alphabetical, "(no user)" first (the list holds the biggest spenders).
        users=sorted(
            ((NO_USER if i is None else str(i), label(i)) for i in user_ids),
            key=lambda choice: (choice[0] != NO_USER, choice[1]),
        ),
    )
    tags = [_breakdown_row(r["tag"], everything.narrowed(tag=r["tag"]), r) for r in top_tags]
    return Breakdowns(users=users, features=features, options=options, tags=tags)


def tag_rows(filters: DashboardFilters, limit: int = TOP_ROWS) -> list[UsageRow]:
    """Spend by tag over the period, the biggest first (only the filter's tag under one).

    From the tag rollup: a call with several tags is in each of their rows, so the rows may add
    up to more than the period's spend. Empty when the filters name a provider, model, user or
    feature: the tag rollup has none of those (``not_narrowed``).
    """
    if filters.has_dimensions:
        return []
    return [
        _breakdown_row(r["tag"], filters.period_only().narrowed(tag=r["tag"]), r) for r in ranked_tags(filters, limit)
    ]


def ranked_tags(filters: DashboardFilters, limit: int) -> list[dict[str, Any]]:
    """Sums per tag over the period (the filter's tag only, if set), the biggest spenders first."""
    rows = LLMUsageByTag.objects.filter(date__gte=filters.start, date__lte=filters.end)
    if filters.tag:
        rows = rows.filter(tag=filters.tag)
    return list(
        rows.values("tag")
        .annotate(**{name: Sum(name) for name in SUMMARY_COUNTERS})
        .order_by("-cost", "-requests", "tag")[:limit]
    )


def expensive_traces(filters: DashboardFilters, limit: int = TOP_ROWS) -> list[TraceRow]:
    """The costliest traces started in the period (their roots: totals of every call of the trace).

    A walk of the partial index on the roots' -cost, stopped after ``limit`` roots in the window.
    Not narrowed by the other filters (a trace spans models and features; ``not_narrowed``).
    """
    since, until = filters.window
    roots = (
        LLMTrace.objects.filter(parent__isnull=True, started_at__gte=since, started_at__lt=until)
        .order_by("-cost", "id")
        .values(
            "id",
            "name",
            "status",
            "started_at",
            "ended_at",
            "user_id",
            "subject_type_id",
            "subject_id",
            "requests",
            "failures",
            "cache_hits",
            "total_tokens",
            "cost",
        )[:limit]
    )
    return [TraceRow(**row) for row in roots]


def not_narrowed(filters: DashboardFilters) -> frozenset[str]:
    """The sections whose figures cannot be narrowed to the filters (the page says so, showing none)."""
    sections: set[str] = {"traces"} if filters.tag or filters.has_dimensions else set()
    if filters.tag:
        sections |= {"models", "users", "features", "drifts"}
    if filters.has_dimensions:
        sections.add("tags")
    return frozenset(sections)


def _breakdown_row(label: str, filters: DashboardFilters, row: Mapping[str, Any]) -> UsageRow:
    return UsageRow(
        label=label,
        filters=filters,
        requests=row["requests"],
        failures=row["failures"],
        cache_hits=row["cache_hits"],
        tokens=row["total_tokens"],
        cost=row["cost"],
        saved_cost=row["saved_cost"],
        refusals=row["refusals"],
        **{name: row[name] for name in REPORTED_COUNTERS if name in row},
    )


def with_current_spend(budgets: QuerySet[Budget], today: date | None = None) -> QuerySet[BudgetWithSpend]:
    """Annotate ``current_spent`` / ``current_reserved`` / ``current_period_start`` (one query, no N+1).

    "Today" is the budgets' own (``timezone.localdate()``, as ``BudgetGuard`` reserves against).
    """
    today = today or timezone.localdate()
    month_start = today.replace(day=1)
    is_month = Q(period=Budget.Period.MONTH)

    def current(column: str) -> Coalesce:
        def spend(start: date) -> Subquery:
            return Subquery(BudgetSpend.objects.filter(budget=OuterRef("pk"), period_start=start).values(column)[:1])

        return Coalesce(
            Case(When(is_month, then=spend(month_start)), default=spend(today), output_field=_MONEY),
            Value(_ZERO),
            output_field=_MONEY,
        )

    return budgets.annotate(
        current_spent=current("spent"),
        current_reserved=current("reserved"),
        current_period_start=Case(When(is_month, then=Value(month_start)), default=Value(today)),
    )


def budget_usage(today: date | None = None) -> list[BudgetUsage]:
    """Every active budget's use in its current period, most used (against its limits) first."""
    budgets = with_current_spend(Budget.objects.filter(is_active=True).select_related("user"), today)
    usage = [
        BudgetUsage(
            budget_id=b.pk,
            name=b.name,
            scope=b.scope,
            target=budget_target(b),
            period=b.period,
            period_start=b.current_period_start,
            spent=b.current_spent,
            reserved=b.current_reserved,
            soft_limit=b.soft_limit,
            hard_limit=b.hard_limit,
        )
        for b in budgets
    ]
    return sorted(usage, key=lambda u: (-(u.hard_share or 0), -(u.soft_share or 0), u.name))


def budget_target(budget: Budget) -> str:
    if budget.scope == Budget.Scope.USER:
        return user_label(budget.user_id, getattr(budget.user, "email", None), getattr(budget.user, "username", None))
    if budget.scope == Budget.Scope.FEATURE:
        return budget.feature
    return "everything"


# -- everything -----------------------------------------------------------------------------------


def build_dashboard(filters: DashboardFilters, *, raw_log: bool = True, budgets_today: date | None = None) -> Dashboard:
    """All the dashboard's figures for ``filters``; ``raw_log=False`` skips the request tables."""
    current, previous, per_day = daily_totals(filters)
    models = model_rows(filters)
    daily = daily_series(filters, per_day, spend_by_model(filters, models, {d: t.cost for d, t in per_day.items()}))
    split = breakdowns(filters, models)
    return Dashboard(
        filters=filters,
        previous_filters=filters.previous(),
        current=current,
        previous=previous,
        figures=headline(current, previous),
        daily=daily,
        models=models,
        users=split.users,
        features=split.features,
        tags=split.tags,
        traces=[] if "traces" in not_narrowed(filters) else expensive_traces(filters),
        not_narrowed=not_narrowed(filters),
        budgets=budget_usage(budgets_today),
        options=split.options,
        accuracy=cost_accuracy(current, models),
        expensive=most_expensive_calls(filters, matching=current.requests) if raw_log else None,
        failures=recent_failures(filters, matching=current.failures) if raw_log else None,
    )
