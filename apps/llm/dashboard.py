"""The cost and usage dashboard's figures: pure functions of ``DashboardFilters``.

Everything is computed from the daily rollups (``apps.llm.rollups``), whose size grows with
the combinations in use, not with the number of calls; each question reads the smallest
rollup that has its dimensions (per model and feature, per user, or the finest one when the
filters cross them). Only the two request tables (the most expensive calls, the latest
failures) read the raw log; both are LIMITed to a few rows inside the period, choose their
plan from the counts the rollups already gave, and run under a statement timeout, so a log
of tens of millions of rows cannot make the page hang.

A render costs a fixed number of queries whatever the period, each returning at most a row
per day and model: sums per day over the period and the one before it (the headline, the
daily charts, the latency histograms), per model (the models table), per day of the charted
models (the spend chart), two to five ranked ones (the filter choices; when filtered, also
the top users and features and the models of the whole period) and one for user labels, one for the budgets, and two or three that
fetch ten rows of the log.

Days are UTC dates: the rollups are keyed by ``created_at.date()`` of UTC timestamps.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import OperationalError, connection, transaction
from django.db.models import (
    Case,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
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

from .models import KEPT_CALLS, LATENCY_BUCKETS_MS, Budget, BudgetSpend, LLMRequest
from .pricing import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS
from .rollups import COSTLIEST, LATEST_FAILURES, CallList, rollup_for

logger = logging.getLogger(__name__)

#: Period choices: name -> number of days ending today (inclusive).
PERIODS: dict[str, int] = {"today": 1, "7": 7, "30": 30, "90": 90}
PERIOD_LABELS: dict[str, str] = {"today": "Today", "7": "Last 7 days", "30": "Last 30 days",
                                 "90": "Last 90 days", "custom": "Custom range"}
DEFAULT_PERIOD = "30"
#: Longest custom range: the daily charts and the (day x model) query stay small.
MAX_DAYS = 366
#: Models drawn separately in the spend chart; the rest are summed into "Other".
CHART_MODELS = 6
#: Rows in each "top" table and breakdown chart.
TOP_ROWS = 10
#: Values each filter dropdown offers (the biggest spenders of the period).
MAX_CHOICES = 300

#: Filter values that select calls *without* a user / feature ("" and absent mean "all").
NO_USER = "none"
NO_FEATURE = "-"
OTHER = "Other"

#: Up to this many matching calls (known from the rollups) the raw-log tables read all of them
#: through the time/dimension indexes and sort; above it they first try the ordered index walk
#: (see most_expensive_calls and recent_failures).
RANGE_SCAN_MAX = 20_000
#: How far down the cost index the most-expensive probe looks (index entries and heap rows).
PROBE_ROWS = 20_000
#: Hard bound on each raw-log query; a timed-out table says so instead of hanging the page.
RAW_LOG_TIMEOUT_MS = 2_000

_MONEY = DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
_ZERO = Decimal(0)
_SUMS = ("requests", "failures", "cache_hits", "prompt_tokens", "cached_tokens", "completion_tokens",
         "total_tokens", "cost", "saved_cost", "latency_ms_sum")
_BUCKETS = len(LATENCY_BUCKETS_MS) + 1


def rollup_today() -> date:
    """Today as the rollups count days (UTC), whatever time zone the request activated."""
    return datetime.now(UTC).date()


# -- filters --------------------------------------------------------------------------------------


def parse_user(value: str | None) -> tuple[int | None, bool] | None:
    """A user filter value: ``(user_id, False)``, ``(None, True)`` for "no user", None for "all"."""
    value = (value or "").strip()
    if not value:
        return None
    if value == NO_USER:
        return None, True
    return (int(value), False) if value.isdigit() else None


def parse_feature(value: str | None) -> str | None:
    """A feature filter value: the feature, ``""`` for "no feature", None for "all"."""
    if value is None or value == "":
        return None
    return "" if value == NO_FEATURE else value


@dataclass(frozen=True)
class DashboardFilters:
    """The period (inclusive UTC days) and the dimensions the dashboard is narrowed to."""

    start: date
    end: date
    period: str = DEFAULT_PERIOD
    provider: str = ""
    model: str = ""
    user_id: int | None = None
    #: Only calls attributed to no user (``user_id`` is then None).
    without_user: bool = False
    #: None: every feature; "": calls without a feature.
    feature: str | None = None

    @classmethod
    def for_period(cls, period: str = DEFAULT_PERIOD, *, today: date | None = None, **dims: Any) -> DashboardFilters:
        today = today or rollup_today()
        period = _period_name(period)
        return cls(start=today - timedelta(days=PERIODS[period] - 1), end=today, period=period, **dims)

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date | None = None) -> DashboardFilters:
        """Read the dashboard's querystring; values that do not parse fall back to the defaults."""
        today = today or rollup_today()
        dims: dict[str, Any] = {"provider": (query.get("provider") or "").strip(),
                                "model": (query.get("model") or "").strip(),
                                "feature": parse_feature(query.get("feature"))}
        user = parse_user(query.get("user"))
        if user is not None:
            dims["user_id"], dims["without_user"] = user
        period = query.get("period") or DEFAULT_PERIOD
        if period == "custom":
            start, end = _parse_date(query.get("start")), _parse_date(query.get("end"))
            if start or end:
                start, end = start or end, end or start
                if start > end:
                    start, end = end, start
                # Clamped so that a typo ("0202-01-01") cannot ask for centuries of days.
                start = max(start, end - timedelta(days=MAX_DAYS - 1))
                return cls(start=start, end=end, period="custom", **dims)
            period = DEFAULT_PERIOD
        return cls.for_period(period, today=today, **dims)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def previous(self) -> DashboardFilters:
        """The period of the same length just before this one, same dimensions."""
        return dataclasses.replace(self, start=self.start - timedelta(days=self.days),
                                   end=self.start - timedelta(days=1), period="custom")

    def narrowed(self, **dims: Any) -> DashboardFilters:
        return dataclasses.replace(self, **dims)

    def period_only(self) -> DashboardFilters:
        """The same period, every dimension cleared."""
        return DashboardFilters(start=self.start, end=self.end, period=self.period)

    def dimension_names(self) -> set[str]:
        """The rollup columns the filters narrow (``apps.llm.rollups.DIMENSIONS``)."""
        names = {"provider": bool(self.provider), "model": bool(self.model),
                 "user_id": self.without_user or self.user_id is not None, "feature": self.feature is not None}
        return {name for name, narrowed in names.items() if narrowed}

    @property
    def user_param(self) -> str:
        return NO_USER if self.without_user else ("" if self.user_id is None else str(self.user_id))

    @property
    def feature_param(self) -> str:
        return "" if self.feature is None else (self.feature or NO_FEATURE)

    def dimension_params(self) -> dict[str, str]:
        """The dimensions as querystring values; the request-log filters read the same names."""
        params = {"provider": self.provider, "model": self.model, "user": self.user_param,
                  "feature": self.feature_param}
        return {k: v for k, v in params.items() if v}

    def query_params(self) -> dict[str, str]:
        """This dashboard's own querystring."""
        params = {"period": self.period}
        if self.period == "custom":
            params |= {"start": self.start.isoformat(), "end": self.end.isoformat()}
        return params | self.dimension_params()

    def dimensions_q(self) -> Q:
        """The dimensions, for either table (both name them alike)."""
        q = Q()
        if self.provider:
            q &= Q(provider=self.provider)
        if self.model:
            q &= Q(model=self.model)
        if self.without_user:
            q &= Q(user__isnull=True)
        elif self.user_id is not None:
            q &= Q(user_id=self.user_id)
        if self.feature is not None:
            q &= Q(feature=self.feature)
        return q

    def dimensions_sql(self) -> tuple[str, list[Any]]:
        """``dimensions_q`` as a SQL condition, for the raw queries (same columns in both tables)."""
        parts, params = [], []
        for column, value in (("provider", self.provider), ("model", self.model)):
            if value:
                parts.append(f"{column} = %s")
                params.append(value)
        if self.without_user:
            parts.append("user_id IS NULL")
        elif self.user_id is not None:
            parts.append("user_id = %s")
            params.append(self.user_id)
        if self.feature is not None:
            parts.append("feature = %s")
            params.append(self.feature)
        return " AND ".join(parts) or "TRUE", params

    def rollup_q(self) -> Q:
        return Q(date__gte=self.start, date__lte=self.end) & self.dimensions_q()

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The period as a half-open UTC interval: a plain range on the created_at indexes."""
        return (datetime.combine(self.start, time.min, tzinfo=UTC),
                datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC))

    def request_log_q(self) -> Q:
        since, until = self.window
        return Q(created_at__gte=since, created_at__lt=until) & self.dimensions_q()


def _period_name(value: str) -> str:
    """A preset period's key; "7d" is read as "7", anything unknown as the default."""
    value = value.strip().lower()
    value = value.removesuffix("d") if value[:-1].isdigit() else value
    return value if value in PERIODS else DEFAULT_PERIOD


def _parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


# -- latency percentiles from histograms ----------------------------------------------------------


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, in ms; None when it is empty.

    Calls are assumed spread evenly inside their bucket (linear interpolation between its
    bounds), so the answer lies in the bucket the exact value is in. The last bucket has no
    upper bound: a quantile falling there is reported as its lower bound.
    """
    total = sum(histogram)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = LATENCY_BUCKETS_MS[index - 1] if index else 0
            if index >= len(LATENCY_BUCKETS_MS):
                return float(lower)
            return lower + (LATENCY_BUCKETS_MS[index] - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def _add_histograms(into: list[int], other: Sequence[int]) -> None:
    for i, n in enumerate(other):
        into[i] += n


# -- results --------------------------------------------------------------------------------------


@dataclass
class Totals:
    """Sums of rollup rows. Tokens are those billed: cache hits spent none (their cost is in saved)."""

    requests: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = _ZERO
    saved_cost: Decimal = _ZERO
    latency_ms_sum: int = 0
    latency_histogram: list[int] = field(default_factory=lambda: [0] * _BUCKETS)

    def add(self, other: Totals | Mapping[str, Any]) -> None:
        get = other.get if isinstance(other, Mapping) else lambda name: getattr(other, name)
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + (get(name) or 0))
        _add_histograms(self.latency_histogram, get("latency_histogram"))

    @property
    def input_tokens(self) -> int:
        """Prompt tokens read at the full price (cache reads are cheaper and counted apart)."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def cache_misses(self) -> int:
        # A failed call neither hit nor missed the cache (as in usage_stats).
        return self.requests - self.cache_hits - self.failures

    @property
    def cache_hit_rate(self) -> float | None:
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else None

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.latency_histogram, 0.5)

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.latency_histogram, 0.95)


@dataclass(frozen=True)
class Figure:
    """One headline number with its value over the previous period of the same length."""

    key: str
    label: str
    value: Decimal | int | float | None
    previous: Decimal | int | float | None
    #: "money", "count", "rate" (a fraction) or "ms".
    kind: str
    #: Whether a fall is good news (spend, errors, latency), a rise (cache hits), or neither.
    lower_is_better: bool | None = None

    @property
    def change(self) -> float | None:
        """Relative change; for rates the difference in points (0.02 = 2 points)."""
        if self.value is None or self.previous is None:
            return None
        if self.kind == "rate":
            return float(self.value) - float(self.previous)
        if not self.previous:
            return None
        return float((self.value - self.previous) / self.previous)


def headline(current: Totals, previous: Totals) -> list[Figure]:
    return [
        Figure("spend", "Spend", current.cost, previous.cost, "money", True),
        Figure("requests", "Requests", current.requests, previous.requests, "count"),
        Figure("tokens", "Tokens", current.total_tokens, previous.total_tokens, "count"),
        Figure("cache_hit_rate", "Cache hit rate", current.cache_hit_rate, previous.cache_hit_rate, "rate", False),
        Figure("saved", "Saved by the cache", current.saved_cost, previous.saved_cost, "money", False),
        Figure("error_rate", "Error rate", current.error_rate, previous.error_rate, "rate", True),
        Figure("p50", "Median latency", current.p50_ms, previous.p50_ms, "ms", True),
        Figure("p95", "p95 latency", current.p95_ms, previous.p95_ms, "ms", True),
    ]


@dataclass(frozen=True)
class DailySeries:
    """One value per day of the period (days without calls included, as zeros)."""

    days: list[date]
    requests: list[int]
    failures: list[int]
    cost: list[Decimal]
    input_tokens: list[int]
    cached_tokens: list[int]
    output_tokens: list[int]
    p50_ms: list[float | None]
    p95_ms: list[float | None]
    #: Spend per day of the top models, then "Other": (label, filters of that series, values).
    cost_by_model: list[tuple[str, DashboardFilters | None, list[Decimal]]]


@dataclass(frozen=True)
class UsageRow:
    """One model, user or feature over the period; ``filters`` select exactly its calls."""

    label: str
    filters: DashboardFilters
    requests: int
    failures: int
    cache_hits: int
    tokens: int
    cost: Decimal
    saved_cost: Decimal

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None


@dataclass(frozen=True)
class BudgetUsage:
    """A budget's use in its current period ("reached": settled spend at or past the limit)."""

    budget_id: int
    name: str
    scope: str
    target: str
    period: str
    period_start: date
    spent: Decimal
    reserved: Decimal
    soft_limit: Decimal | None
    hard_limit: Decimal | None

    @staticmethod
    def _share(amount: Decimal, limit: Decimal | None) -> float | None:
        return float(amount / limit) if limit else None

    @property
    def soft_share(self) -> float | None:
        return self._share(self.spent, self.soft_limit)

    @property
    def hard_share(self) -> float | None:
        return self._share(self.spent, self.hard_limit)

    @property
    def soft_reached(self) -> bool:
        return self.soft_limit is not None and self.spent >= self.soft_limit

    @property
    def hard_reached(self) -> bool:
        return self.hard_limit is not None and self.spent >= self.hard_limit

    @property
    def status(self) -> str:
        return "hard" if self.hard_reached else "soft" if self.soft_reached else "ok"


@dataclass(frozen=True)
class LoggedCall:
    """A row of the raw log, without its prompt and answer (never loaded for the tables)."""

    id: UUID
    created_at: datetime
    provider: str
    model: str
    status: str
    feature: str
    user_id: int | None
    total_tokens: int
    cost: Decimal | None
    latency_ms: float
    error_type: str
    error_message: str


@dataclass(frozen=True)
class RawTable:
    rows: list[LoggedCall]
    #: The query hit RAW_LOG_TIMEOUT_MS: the table is empty for that reason, not for lack of data.
    timed_out: bool = False


@dataclass(frozen=True)
class FilterOptions:
    """What the filters offer: the values seen in the period's rollups."""

    providers: list[str]
    models: list[tuple[str, str]]
    features: list[str]
    #: (filter value, label) of the period's biggest spenders (MAX_CHOICES).
    users: list[tuple[str, str]]


@dataclass(frozen=True)
class Dashboard:
    filters: DashboardFilters
    previous_filters: DashboardFilters
    current: Totals
    previous: Totals
    figures: list[Figure]
    daily: DailySeries
    models: list[UsageRow]
    users: list[UsageRow]
    features: list[UsageRow]
    budgets: list[BudgetUsage]
    options: FilterOptions
    expensive: RawTable | None
    failures: RawTable | None

    @property
    def budgets_reached(self) -> list[BudgetUsage]:
        return [b for b in self.budgets if b.status != "ok"]


# -- queries --------------------------------------------------------------------------------------


def _period_rows(filters: DashboardFilters, group: tuple[str, ...], aggregates: dict[str, Any], *,
                 since: date | None = None) -> QuerySet:
    """Rollup sums per ``group`` from ``since`` (default: the period start) to the end, from the
    first rollup that has the grouped and filtered dimensions."""
    rollup = rollup_for({*(c for c in group if c != "date"), *filters.dimension_names()})
    return (rollup.model.objects
            .filter(Q(date__gte=since or filters.start, date__lte=filters.end) & filters.dimensions_q())
            .values(*group).annotate(**aggregates).order_by())


def daily_totals(filters: DashboardFilters) -> tuple[Totals, Totals, dict[date, Totals]]:
    """Totals of the period, of the one before it, and of each day of the period (with histograms)."""
    aggregates: dict[str, Any] = {name: Sum(name) for name in _SUMS}
    # Element-wise sums of the histogram arrays: one column per bucket (SUM(h[i])).
    aggregates |= {f"h{i}": Sum(f"latency_histogram__{i}") for i in range(_BUCKETS)}
    current, previous, per_day = Totals(), Totals(), {}
    for row in _period_rows(filters, ("date",), aggregates, since=filters.previous().start):
        totals = Totals(**{name: row[name] or 0 for name in _SUMS},
                        latency_histogram=[row[f"h{i}"] or 0 for i in range(_BUCKETS)])
        if row["date"] < filters.start:
            previous.add(totals)
        else:
            current.add(totals)
            per_day[row["date"]] = totals
    return current, previous, per_day


def _model_label(provider: str, model: str, ambiguous: set[str]) -> str:
    return f"{model} ({provider})" if model in ambiguous else model


def model_rows(filters: DashboardFilters) -> list[UsageRow]:
    """Every model of the period, the biggest spenders first."""
    rows = list(_period_rows(filters, ("provider", "model"), {name: Sum(name) for name in _BREAKDOWN_SUMS}))
    rows.sort(key=lambda r: (-r["cost"], -r["requests"], r["provider"], r["model"]))
    ambiguous = {m for m, n in Counter(r["model"] for r in rows).items() if n > 1}
    return [_breakdown_row(_model_label(r["provider"], r["model"], ambiguous),
                           filters.narrowed(provider=r["provider"], model=r["model"]), r) for r in rows]


def spend_by_model(filters: DashboardFilters, models: list[UsageRow],
                   day_cost: Mapping[date, Decimal]) -> list[tuple[str, DashboardFilters | None, list[Decimal]]]:
    """Spend per day of the top ``CHART_MODELS`` models, then "Other" (the rest of each day's spend)."""
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
        series.append((OTHER, None, [day_cost.get(d, _ZERO) - sum((s[2][i] for s in series), _ZERO)
                                     for i, d in enumerate(days)]))
    return series


def daily_series(filters: DashboardFilters, per_day: Mapping[date, Totals],
                 cost_by_model: list[tuple[str, DashboardFilters | None, list[Decimal]]]) -> DailySeries:
    days = filters.day_list()
    day_totals = [per_day.get(d) or Totals() for d in days]
    return DailySeries(
        days=days,
        requests=[t.requests for t in day_totals],
        failures=[t.failures for t in day_totals],
        cost=[t.cost for t in day_totals],
        input_tokens=[t.input_tokens for t in day_totals],
        cached_tokens=[t.cached_tokens for t in day_totals],
        output_tokens=[t.completion_tokens for t in day_totals],
        p50_ms=[t.p50_ms for t in day_totals],
        p95_ms=[t.p95_ms for t in day_totals],
        cost_by_model=cost_by_model,
    )


def user_label(user_id: int | None, email: str | None = None, username: str | None = None) -> str:
    if user_id is None:
        return "(no user)"
    return email or username or f"user #{user_id} (deleted)"


@dataclass(frozen=True)
class Breakdowns:
    users: list[UsageRow]
    features: list[UsageRow]
    options: FilterOptions


_BREAKDOWN_SUMS = ("requests", "failures", "cache_hits", "total_tokens", "cost", "saved_cost")


def ranked(group: str, filters: DashboardFilters, limit: int) -> list[dict[str, Any]]:
    """Sums per ``group`` over the filtered period, the biggest spenders first.

    Read from the smallest rollup that has the column and every filtered dimension: the
    per-user or per-model one unless the filters cross the two.
    """
    rollup = rollup_for({group, *filters.dimension_names()})
    return list(rollup.model.objects.filter(filters.rollup_q()).values(group)
                .annotate(**{name: Sum(name) for name in _BREAKDOWN_SUMS})
                .order_by("-cost", "-requests", group)[:limit])


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
    else:
        top_users, top_features = ranked("user_id", filters, limit), ranked("feature", filters, limit)
        models = model_rows(everything)
    user_ids = [r["user_id"] for r in all_users]
    feature_choices = [r["feature"] for r in all_features]

    known = {u["id"]: u for u in get_user_model().objects.filter(pk__in={*user_ids, *(r["user_id"] for r in top_users)})
             .values("id", "email", "username")}

    def label(user_id: int | None) -> str:
        user = known.get(user_id, {})
        return user_label(user_id, user.get("email"), user.get("username"))

    users = [_breakdown_row(label(r["user_id"]), filters.narrowed(user_id=r["user_id"],
                                                                  without_user=r["user_id"] is None), r)
             for r in top_users if r["requests"]]
    features = [_breakdown_row(r["feature"] or "(no feature)", filters.narrowed(feature=r["feature"]), r)
                for r in top_features if r["requests"]]
    model_choices = [(row.filters.provider, row.filters.model) for row in models[:MAX_CHOICES]]
    options = FilterOptions(providers=sorted({p for p, _ in model_choices}),
                            models=sorted(model_choices, key=lambda pm: pm[1]),
                            features=sorted(feature_choices),
                            # Alphabetical, "(no user)" first (the list holds the biggest spenders).
                            users=sorted(((NO_USER if i is None else str(i), label(i)) for i in user_ids),
                                         key=lambda choice: (choice[0] != NO_USER, choice[1])))
    return Breakdowns(users=users, features=features, options=options)


def _breakdown_row(label: str, filters: DashboardFilters, row: Mapping[str, Any]) -> UsageRow:
    return UsageRow(label=label, filters=filters, requests=row["requests"], failures=row["failures"],
                    cache_hits=row["cache_hits"], tokens=row["total_tokens"], cost=row["cost"],
                    saved_cost=row["saved_cost"])


def with_current_spend(budgets: QuerySet[Budget], today: date | None = None) -> QuerySet[Budget]:
    """Annotate ``current_spent`` / ``current_reserved`` / ``current_period_start`` (one query, no N+1).

    "Today" is the budgets' own (``timezone.localdate()``, as ``BudgetGuard`` reserves against).
    """
    today = today or timezone.localdate()
    month_start = today.replace(day=1)
    is_month = Q(period=Budget.Period.MONTH)

    def current(column: str) -> Coalesce:
        def spend(start: date) -> Subquery:
            return Subquery(BudgetSpend.objects.filter(budget=OuterRef("pk"), period_start=start).values(column)[:1])

        return Coalesce(Case(When(is_month, then=spend(month_start)), default=spend(today), output_field=_MONEY),
                        Value(_ZERO), output_field=_MONEY)

    return budgets.annotate(
        current_spent=current("spent"), current_reserved=current("reserved"),
        current_period_start=Case(When(is_month, then=Value(month_start)), default=Value(today)),
    )


def budget_usage(today: date | None = None) -> list[BudgetUsage]:
    """Every active budget's use in its current period, most used (against its limits) first."""
    budgets = with_current_spend(Budget.objects.filter(is_active=True).select_related("user"), today)
    usage = [
        BudgetUsage(budget_id=b.pk, name=b.name, scope=b.scope, target=budget_target(b), period=b.period,
                    period_start=b.current_period_start, spent=b.current_spent, reserved=b.current_reserved,
                    soft_limit=b.soft_limit, hard_limit=b.hard_limit)
        for b in budgets
    ]
    return sorted(usage, key=lambda u: (-(u.hard_share or 0), -(u.soft_share or 0), u.name))


def budget_target(budget: Budget) -> str:
    if budget.scope == Budget.Scope.USER:
        return user_label(budget.user_id, getattr(budget.user, "email", None), getattr(budget.user, "username", None))
    if budget.scope == Budget.Scope.FEATURE:
        return budget.feature
    return "everything"


# -- the raw log: bounded ---------------------------------------------------------------------------

_CALL_FIELDS = [f.name for f in dataclasses.fields(LoggedCall)]


@contextmanager
def _bounded() -> Iterator[None]:
    """Run the enclosed queries under a statement timeout, put back afterwards when nested.

    ``set_config(..., true)`` is SET LOCAL: it ends with our transaction, but inside an enclosing
    one (ATOMIC_REQUESTS, tests) it would outlive the block, hence the restore.
    """
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                       [f"{RAW_LOG_TIMEOUT_MS}ms"])
        (before, _), = cursor.fetchall()
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


def most_expensive_calls(filters: DashboardFilters, *, matching: int | None = None,
                         limit: int = TOP_ROWS) -> RawTable:
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
    return _raw_table(lambda: queryset.order_by(order, "id").values(*_CALL_FIELDS)[:limit])


def _kept_calls(kept: CallList, filters: DashboardFilters, limit: int) -> RawTable | None:
    """The first ``limit`` calls of ``kept`` over the period's rows of a rollup that covers the
    filters and keeps that list. None when no rollup does (the filters cross users and models),
    or when one of those calls is no longer in the log (the retention job deleted it): the
    next ones are not in the lists, so the caller searches the log instead.
    """
    rollup = rollup_for(filters.dimension_names())
    if kept not in rollup.call_lists or limit > KEPT_CALLS:
        return None
    dims, params = filters.dimensions_sql()
    columns = ", ".join(f"r.{connection.ops.quote_name(c)}" for c in _CALL_FIELDS)
    sql = (f"WITH kept AS (SELECT i FROM {rollup.table}, unnest({kept.values}, {kept.ids}) AS u(v, i) "
           f"WHERE date BETWEEN %s AND %s AND {dims} ORDER BY v DESC, i LIMIT %s) "
           f"SELECT {columns} FROM kept LEFT JOIN {LLMRequest._meta.db_table} r ON r.id = kept.i "
           f"ORDER BY r.{connection.ops.quote_name(kept.log_value)} DESC, r.id")

    def run() -> list[dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [filters.start, filters.end, *params, limit])
            return [dict(zip(_CALL_FIELDS, row)) for row in cursor.fetchall()]

    table = _raw_table(run)
    return None if any(call.id is None for call in table.rows) else table


def _probe_costliest(filters: DashboardFilters, limit: int) -> RawTable:
    dims, params = filters.dimensions_sql()
    columns = ", ".join(connection.ops.quote_name(c) for c in _CALL_FIELDS)
    sql = (f"SELECT {columns} FROM (SELECT {columns} FROM {LLMRequest._meta.db_table} WHERE cost IS NOT NULL "
           f"ORDER BY cost DESC LIMIT %s) top "
           f"WHERE created_at >= %s AND created_at < %s AND {dims} ORDER BY cost DESC, id LIMIT %s")

    def run() -> list[dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [PROBE_ROWS, *filters.window, *params, limit])
            return [dict(zip(_CALL_FIELDS, row)) for row in cursor.fetchall()]

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
    return _raw_table(lambda: queryset.order_by(order, "id").values(*_CALL_FIELDS)[:limit])


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
        budgets=budget_usage(budgets_today),
        options=split.options,
        expensive=most_expensive_calls(filters, matching=current.requests) if raw_log else None,
        failures=recent_failures(filters, matching=current.failures) if raw_log else None,
    )
