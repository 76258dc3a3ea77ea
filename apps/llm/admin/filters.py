"""List filters of the request log and the daily rollups: indexed lookups only.

The request log can hold tens of millions of rows: every filter here narrows by an indexed
column, and the dropdowns read their choices by index skip-scans instead of SELECT DISTINCT.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest
from unfold.contrib.filters.admin import (
    DropdownFilter,
    RadioFilter,
    RangeDateFilter,
    TextFilter,
)
from unfold.utils import parse_date_str

from apps.llm.admin.base import warn_once
from apps.llm.dashboard import (
    NO_FEATURE,
    parse_feature,
    parse_user,
)
from apps.llm.dashboard.filters import QueryValueError, clamp_day, parse_day, shown_value
from apps.llm.errors import LLMError, Refused
from apps.llm.models import LLMRequest, LLMUsageByModel
from apps.llm.transport.providers import LOCAL, provider_specs

#: Most distinct values a skip-scan filter lists (each costs one index probe).
MAX_SKIP_SCAN_VALUES = 500


class DayRangeFilter(RangeDateFilter):
    """Days (UTC, inclusive, as in the rollups) on a timestamp: ``created_at_from`` / ``created_at_to``.

    Filters with a half-open range on the timestamp itself, so the created_at indexes serve it
    (a ``created_at::date`` comparison could not use them). A value that is no day is ignored
    with a message; a day outside ``MIN_DATE..MAX_DATE`` is moved to that bound (so the day
    after the last one is still a date).
    """

    def __init__(self, field: Any, request: HttpRequest, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(field, request, params, *args, **kwargs)
        self.days: dict[str, date] = {}
        for suffix in ("from", "to"):
            name = f"{self.parameter_name}_{suffix}"
            value = self.used_parameters.get(name)
            if isinstance(value, list):
                value = value[0] if value else None
            if not value:
                continue
            try:
                day = _day(str(value))
            except QueryValueError as error:
                warn_once(request, f"The filter “{name}” was ignored: {error}.")
                del self.used_parameters[name]
                continue
            if day != clamp_day(day):
                warn_once(request, f"The {name} date {day} is out of range: {clamp_day(day)} is used instead.")
            self.days[suffix] = clamp_day(day)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        start, end = self.days.get("from"), self.days.get("to")
        if start:
            queryset = queryset.filter(**{f"{self.parameter_name}__gte": datetime.combine(start, time.min, UTC)})
        if end:
            queryset = queryset.filter(
                **{f"{self.parameter_name}__lt": datetime.combine(end + timedelta(days=1), time.min, UTC)}
            )
        return queryset


def _day(value: str) -> date:
    """ISO (what the dashboard links and the calendar widget write), else the site's input formats."""
    try:
        day = parse_day(value)
    except QueryValueError:
        day = parse_date_str(value) if value.isascii() else None
    if day is None:
        raise QueryValueError(f"“{shown_value(value)}” is not a date")
    return day


class ProviderFilter(DropdownFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = [*provider_specs(), LOCAL]
        if self.value() and self.value() not in names:
            names.append(self.value())
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(provider=self.value()) if self.value() else queryset


def distinct_indexed_values(table: str, column: str, limit: int = MAX_SKIP_SCAN_VALUES) -> list[str]:
    """The distinct values of an indexed column by a skip scan: one index probe per value.

    ``SELECT DISTINCT`` would read every row; this recursive query jumps from each value to the
    next through the index whose leading column is ``column``.
    """
    table, column = connection.ops.quote_name(table), connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE v(value) AS (
                (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
                UNION ALL
                SELECT (SELECT {column} FROM {table} WHERE {column} > v.value ORDER BY {column} LIMIT 1)
                FROM v WHERE v.value IS NOT NULL
            )
            SELECT value FROM v WHERE value IS NOT NULL LIMIT %s
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


class SkipScanDropdownFilter(DropdownFilter):
    """A dropdown of a column's distinct values, read through its index (the request log's)."""

    column = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        values = distinct_indexed_values(model_admin.model._meta.db_table, self.column)
        choices = [self.choice(value) for value in values]
        if self.value() and self.value() not in {c[0] for c in choices}:
            choices.append((self.value(), self.value()))
        return choices

    def choice(self, value: str) -> tuple[str, str]:
        return value, value


class ModelFilter(SkipScanDropdownFilter):
    title = "model"
    parameter_name = "model"
    column = "model"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class FeatureDropdownFilter(SkipScanDropdownFilter):
    """``feature=-`` selects calls without a feature."""

    title = "feature"
    parameter_name = "feature"
    column = "feature"

    def choice(self, value: str) -> tuple[str, str]:
        return (value, value) if value else (NO_FEATURE, "(no feature)")

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        feature = parse_feature(self.value())
        return queryset if feature is None else queryset.filter(feature=feature)


class FeatureTextFilter(TextFilter):
    """Exact feature name (``-``: none): a text box, for the rollups' changelist (no dropdown to fill)."""

    title = "feature"
    parameter_name = "feature"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        feature = parse_feature((self.value() or "").strip())
        return queryset if feature is None else queryset.filter(feature=feature)


class ModelTextFilter(TextFilter):
    title = "model"
    parameter_name = "model"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(model=value) if value else queryset


class UserFilter(TextFilter):
    """A user id, an e-mail address, or ``none`` for calls without a user (users can be many:
    no dropdown of them all)."""

    title = "user (id, e-mail or none)"
    parameter_name = "user"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(user_condition(value)) if value else queryset


def user_condition(value: str) -> Q:
    """The calls of a user given by id, e-mail address or username (``none``: calls without a user).

    Names are resolved on the users table first, so the log is read through its (user, created_at) index.
    """
    parsed = parse_user(value)
    if parsed is not None:
        user_id, without_user = parsed
        return Q(user__isnull=True) if without_user else Q(user_id=user_id)
    from django.contrib.auth import get_user_model

    # Resolved now, to constants: a subquery lets the planner join and read the whole index instead.
    ids = list(
        get_user_model().objects.filter(Q(email__iexact=value) | Q(username=value)).values_list("pk", flat=True)[:100]
    )
    return Q(user_id__in=ids)


class ProviderCostDriftFilter(RadioFilter):
    """``drift=1``: calls whose provider reported a cost different from ours (the dashboard's cost accuracy).

    No index serves the comparison, so it relies on the narrowing the dashboard's links always
    add: the period (a created_at range on its index) and usually a model. Alone, it reads the
    log newest first until a page of drifting calls is found.
    """

    title = "provider's cost"
    parameter_name = "drift"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("1", "differs from ours")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() != "1":
            return queryset
        return queryset.filter(cost__isnull=False, provider_cost__isnull=False).filter(~Q(cost=F("provider_cost")))


def seen_providers() -> list[str]:
    """Every provider the log has seen, from the per-model rollup (tens of rows a day; the log has no
    provider index, so a DISTINCT there would read every call)."""
    return list(LLMUsageByModel.objects.order_by("provider").values_list("provider", flat=True).distinct())


class SeenProviderFilter(ProviderFilter):
    """The request log's provider dropdown: the providers calls were made with, configured or not (any more)."""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = seen_providers()
        if self.value() and self.value() not in names:
            names.append(self.value())
        return [(name, name) for name in names]


def error_types() -> dict[str, str]:
    """Each error type the client records (the name of an ``LLMError`` class) -> the status it is logged with."""
    found: dict[str, str] = {}
    pending: list[type[LLMError]] = [LLMError]
    while pending:
        error = pending.pop()
        found[error.__name__] = LLMRequest.Status.REFUSED if issubclass(error, Refused) else LLMRequest.Status.ERROR
        pending.extend(error.__subclasses__())
    return dict(sorted(found.items()))


class ErrorTypeFilter(DropdownFilter):
    """The error type (an ``LLMError`` class name): choices from the code, none read from the log.

    error_type has no index; the status index does the narrowing (a refusal's type is logged
    with status ``refused``, any other with ``error``), the type is compared on those rows only.
    """

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = list(error_types())
        if self.value() and self.value() not in names:
            names.append(self.value())
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        status = error_types().get(value)
        failed = Q(status=status) if status else Q(status__in=[LLMRequest.Status.ERROR, LLMRequest.Status.REFUSED])
        return queryset.filter(failed, error_type=value)
