"""Admin pages of LLM usage: the request log, budgets, daily rollups and the cost dashboard.

The request log can hold tens of millions of rows, so nothing here scans it: the list is
ordered by the created_at index, counted from the planner's estimate instead of COUNT(*),
filtered by indexed columns whose choices come from index skip-scans, searched by exact
ids only, and its date drill-down is derived from MIN/MAX instead of SELECT DISTINCT.
"""

from __future__ import annotations

import calendar
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import (
    BooleanRadioFilter,
    ChoicesDropdownFilter,
    DropdownFilter,
    RangeDateFilter,
    TextFilter,
)
from unfold.utils import parse_date_str
from unfold.views import ChangeList

from .dashboard import NO_FEATURE, budget_target, parse_feature, parse_user, with_current_spend
from .models import Budget, BudgetSpend, LLMRequest, LLMUsageDaily
from .providers import LOCAL, PROVIDER_ORDER

#: Providers offered by the provider filters: the known names, no query needed.
KNOWN_PROVIDERS = (*PROVIDER_ORDER, LOCAL)
#: Most distinct values a skip-scan filter lists (each costs one index probe).
MAX_CHOICES = 500


def can_view_dashboard(request: HttpRequest) -> bool:
    """Who sees the dashboard (and its sidebar link): staff allowed to view the daily rollups."""
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm("llm.view_llmusagedaily"))


def money(value: Decimal | None) -> str:
    """USD with enough digits for sub-cent calls, without exponent notation."""
    if value is None:
        return "—"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= Decimal("0.01"):
        return f"${value:.4f}"
    # Sub-cent calls: eight decimals are enough to tell them apart (the exact value is on the row).
    return f"${value.quantize(Decimal('1e-8')).normalize():f}" if value else "$0"


# -- pagination without COUNT(*) ------------------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``exact_limit`` rows, beyond that trusts the planner.

    Unfiltered, the count is ``pg_class.reltuples`` (kept by ANALYZE/autovacuum): no query on
    the table at all. Filtered, at most ``exact_limit + 1`` matching rows are counted, then the
    planner's estimate (EXPLAIN) takes over. Pages stop at ``max_pages``: deeper OFFSETs would
    walk millions of index entries; filters or the date drill-down get there instead.
    """

    template_name = "admin/llm/estimated_pagination.html"
    exact_limit = 10_000
    max_pages = 1_000
    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list.order_by()
        if not queryset.query.where:
            estimate = _table_estimate(queryset.model._meta.db_table)
            if estimate > self.exact_limit:
                self.estimated = True
                return estimate
        exact = queryset[: self.exact_limit + 1].count()
        if exact <= self.exact_limit:
            return exact
        self.estimated = True
        return max(exact, _plan_estimate(queryset))

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, self.max_pages)


def _table_estimate(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return max(row[0], 0) if row else 0


def _plan_estimate(queryset: QuerySet) -> int:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


# -- filters ----------------------------------------------------------------------------------------


class DayRangeFilter(RangeDateFilter):
    """Days (UTC, inclusive, as in the rollups) on a timestamp: ``created_at_from`` / ``created_at_to``.

    Filters with a half-open range on the timestamp itself, so the created_at indexes serve it
    (a ``created_at::date`` comparison could not use them).
    """

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        start = _iso_date(self.used_parameters.get(f"{self.parameter_name}_from"))
        end = _iso_date(self.used_parameters.get(f"{self.parameter_name}_to"))
        if start:
            queryset = queryset.filter(**{f"{self.parameter_name}__gte": datetime.combine(start, time.min, UTC)})
        if end:
            queryset = queryset.filter(
                **{f"{self.parameter_name}__lt": datetime.combine(end + timedelta(days=1), time.min, UTC)})
        return queryset


def _iso_date(value: Any) -> date | None:
    """ISO (what the dashboard links and the calendar widget write), else the site's input formats."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        parsed = parse_date_str(value)
    if parsed is None:
        raise IncorrectLookupParameters(f"Not a date: {value!r}")
    return parsed


class ProviderFilter(DropdownFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = list(KNOWN_PROVIDERS)
        if self.value() and self.value() not in names:
            names.append(self.value())
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(provider=self.value()) if self.value() else queryset


def distinct_indexed_values(table: str, column: str, limit: int = MAX_CHOICES) -> list[str]:
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
        if not value:
            return queryset
        parsed = parse_user(value)
        if parsed is not None:
            user_id, without_user = parsed
            return queryset.filter(user__isnull=True) if without_user else queryset.filter(user_id=user_id)
        from django.contrib.auth import get_user_model

        ids = get_user_model().objects.filter(Q(email__iexact=value) | Q(username=value)).values("pk")
        return queryset.filter(user_id__in=ids)


# -- the request log --------------------------------------------------------------------------------


class RequestLogChangeList(ChangeList):
    """Leaves the prompt and answer out of list queries, and drills down by date without DISTINCT."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: list | None = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).defer("prompt", "response", "error_message")

    @cached_property
    def fast_date_hierarchy(self) -> dict[str, Any]:
        """What Django's ``{% date_hierarchy %}`` shows, with choices spanning MIN..MAX.

        Django lists the months/days that have rows with SELECT DISTINCT over all of them; here
        the bounds come from two index probes and every month/day between them is offered (a
        quiet day in the middle leads to an empty page, a small price for not scanning).
        """
        name = self.date_hierarchy
        year, month, day = (self.params.get(f"{name}__{part}") for part in ("year", "month", "day"))

        def link(filters: dict[str, Any]) -> str:
            return self.get_query_string(filters, [f"{name}__"])

        def title(value: date, fmt: str) -> str:
            return capfirst(formats.date_format(value, fmt))

        if year and month and day:
            chosen = date(int(year), int(month), int(day))
            return {"show": True, "back": {"link": link({f"{name}__year": year, f"{name}__month": month}),
                                           "title": title(chosen, "YEAR_MONTH_FORMAT")},
                    "choices": [{"title": title(chosen, "MONTH_DAY_FORMAT")}]}
        # The date lookups already narrowed self.queryset, so these bounds lie inside them.
        bounds = self.queryset.aggregate(first=Min(name), last=Max(name))
        if bounds["first"] is None:
            return {"show": False}
        first, last = (timezone.localtime(bounds[k]).date() for k in ("first", "last"))
        if not year and first.year == last.year:
            year = first.year
            if first.month == last.month:
                month = first.month
        if year and month:
            year, month = int(year), int(month)
            days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
            return {"show": True, "back": {"link": link({f"{name}__year": year}), "title": str(year)},
                    "choices": [{"link": link({f"{name}__year": year, f"{name}__month": month, f"{name}__day": d.day}),
                                 "title": title(d, "MONTH_DAY_FORMAT")} for d in days if first <= d <= last]}
        if year:
            year = int(year)
            low, high = max(first, date(year, 1, 1)), min(last, date(year, 12, 31))
            return {"show": True, "back": {"link": link({}), "title": "All dates"},
                    "choices": [{"link": link({f"{name}__year": year, f"{name}__month": m}),
                                 "title": title(date(year, m, 1), "YEAR_MONTH_FORMAT")}
                                for m in range(low.month, high.month + 1)]}
        return {"show": True, "back": None,
                "choices": [{"link": link({f"{name}__year": y}), "title": str(y)}
                            for y in range(first.year, last.year + 1)]}


STATUS_VARIANTS = {"success": "success", "error": "danger"}


def _user_label(obj: Any) -> str:
    """The row's user; the id alone when the user is gone (the log keeps no constraint)."""
    if obj.user_id is None:
        return "—"
    return str(obj.user) if obj.user else f"#{obj.user_id}"


class ReadOnlyAdmin(ModelAdmin):
    """For records the application writes: viewing only (they are the audit trail).

    They grow with traffic, so the changelist never counts them in full: no facet counts, no
    total next to the filtered count, an estimated page count.
    """

    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    list_select_related = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LLMRequest)
class LLMRequestAdmin(ReadOnlyAdmin):
    """The raw request log: read-only, and fast on tens of millions of rows (see the module doc)."""

    change_list_template = "admin/llm/llmrequest/change_list.html"
    list_display = ["created_at", "status_label", "provider", "model", "feature", "user_display", "prompt_tokens",
                    "completion_tokens", "total_tokens", "cost_display", "latency_display", "cached"]
    list_display_links = ["created_at"]
    # Sorting by any other column would sort the whole table.
    sortable_by = ["created_at"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_filter = [("created_at", DayRangeFilter), ("status", ChoicesDropdownFilter), ProviderFilter, ModelFilter,
                   ("cached", BooleanRadioFilter), UserFilter, FeatureDropdownFilter]
    list_filter_submit = True
    actions = None
    search_fields = ["request_id"]  # enables the box; the lookups are get_search_results'
    search_help_text = "An exact request id (ours or the provider's) or model name."
    fieldsets = [
        ("Call", {"fields": ["id", "created_at", "endpoint", "status_label", "provider", "model_requested", "model",
                             "request_id", "user", "feature", "key_fingerprint"]}),
        ("Error", {"fields": ["error_type", "error_message"]}),
        ("Tokens", {"fields": ["prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens",
                               "reasoning_tokens", "total_tokens"]}),
        ("Cost", {"fields": ["cost_display", "provider_cost", "saved_cost", "price", "cached", "cache_key"]}),
        ("Timing", {"fields": ["latency_display", "time_to_first_token_ms", "attempts"]}),
        ("Prompt and answer", {"fields": ["prompt_display", "response_display"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RequestLogChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Exact matches only: our id (the primary key), the provider's request id, or a model.

        Substring search would read every row. The primary key and model are indexed; the
        provider's request id is compared for equality (an index on it would make that instant).
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=UUID(term)), False
        except ValueError:
            pass
        return queryset.filter(Q(request_id=term) | Q(model=term)), False

    @admin.display(description="status")
    def status_label(self, obj: LLMRequest) -> str:
        return format_html('<span title="{}">{}</span>', obj.error_type,
                           _label(obj.status, STATUS_VARIANTS.get(obj.status, "")))

    @admin.display(description="user")
    def user_display(self, obj: Any) -> str:
        return _user_label(obj)

    @admin.display(description="cost")
    def cost_display(self, obj: LLMRequest) -> str:
        if obj.cost is None:
            return "unknown price"
        if obj.cached and obj.saved_cost:
            return f"{money(obj.cost)} (saved {money(obj.saved_cost)})"
        return money(obj.cost)

    @admin.display(description="latency")
    def latency_display(self, obj: LLMRequest) -> str:
        return f"{obj.latency_ms:,.0f} ms"

    @admin.display(description="prompt")
    def prompt_display(self, obj: LLMRequest) -> str:
        if obj.prompt is None:
            return "Not stored (LLM_STORE_TEXT)."
        return format_prompt(obj.prompt)

    @admin.display(description="answer")
    def response_display(self, obj: LLMRequest) -> str:
        if obj.response is None:
            return "Not stored (LLM_STORE_TEXT)." if obj.status == LLMRequest.Status.SUCCESS else "—"
        return format_text(obj.response)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}),
                         "dashboard_url": reverse("admin:llm_dashboard") if can_view_dashboard(request) else ""}
        return super().changelist_view(request, extra_context)


def _label(text: str, variant: str = "") -> str:
    colours = {"success": ("#dcfce7", "#15803d"), "danger": ("#fee2e2", "#b91c1c"),
               "warning": ("#ffedd5", "#c2410c"), "": ("#f3f4f6", "#374151")}
    background, colour = colours.get(variant, colours[""])
    return format_html('<span style="background:{};color:{};border-radius:6px;padding:1px 8px;font-size:11px;'
                       'font-weight:600;text-transform:uppercase;white-space:nowrap">{}</span>',
                       background, colour, text)


def _message_text(content: Any) -> str:
    """A message's content: a string, or the text of its parts (other parts as JSON)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) and p.get("type") == "text"
                         else json.dumps(p, ensure_ascii=False, indent=2) for p in content)
    return json.dumps(content, ensure_ascii=False, indent=2)


#: Inline styles: the change form loads no stylesheet of ours.
TEXT_STYLE = ("white-space:pre-wrap;word-break:break-word;max-height:32rem;overflow:auto;margin:0;"
              "font-family:ui-monospace,monospace;font-size:12px")
ROLE_STYLE = "font-weight:600;text-transform:uppercase;font-size:11px;opacity:.7;margin:8px 0 2px"


def format_text(text: str) -> str:
    return format_html('<pre class="llm-text" style="{}">{}</pre>', TEXT_STYLE, text)


def format_prompt(prompt: Any) -> str:
    """Chat messages as role + text blocks; anything else (embedding inputs) as indented JSON."""
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return format_html_join(
            "", '<div class="llm-message"><div class="llm-role" style="{}">{}</div>{}</div>',
            ((ROLE_STYLE, m["role"], format_text(_message_text(m.get("content")))) for m in prompt),
        )
    if isinstance(prompt, str):
        return format_text(prompt)
    return format_text(json.dumps(prompt, ensure_ascii=False, indent=2))


# -- budgets ------------------------------------------------------------------------------------------


class BudgetSpendInline(TabularInline):
    model = BudgetSpend
    fields = ["period_start", "spent", "reserved", "soft_warned_at"]
    readonly_fields = fields
    ordering = ["-period_start"]
    extra = 0
    can_delete = False
    verbose_name_plural = "spend per period"

    def has_add_permission(self, request: HttpRequest, obj: Budget | None = None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(ModelAdmin):
    """Budgets with their use in the current period against the soft and hard limits."""

    list_display = ["name", "scope", "target", "period", "spent_display", "reserved_display", "soft_use",
                    "hard_use", "status", "is_active"]
    list_filter = ["is_active", "scope", "period"]
    search_fields = ["name", "feature"]
    raw_id_fields = ["user"]
    inlines = [BudgetSpendInline]
    fields = ["name", "scope", "user", "feature", "period", "soft_limit", "hard_limit", "is_active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_current_spend(super().get_queryset(request).select_related("user"))

    @admin.display(description="target")
    def target(self, obj: Budget) -> str:
        return budget_target(obj)

    @admin.display(description="spent this period", ordering="current_spent")
    def spent_display(self, obj: Budget) -> str:
        return money(obj.current_spent)

    @admin.display(description="reserved (in flight)", ordering="current_reserved")
    def reserved_display(self, obj: Budget) -> str:
        return money(obj.current_reserved)

    @staticmethod
    def _use(spent: Decimal, limit: Decimal | None) -> str:
        if limit is None:
            return "—"
        share = float(spent / limit) if limit else 1.0
        colour = "#dc2626" if share >= 1 else "#ea580c" if share >= 0.8 else "#16a34a"
        return format_html('<progress max="100" value="{}" style="width:70px;accent-color:{}"></progress> '
                           '{}% of {}', f"{min(share * 100, 100):.0f}", colour, f"{share * 100:.0f}", money(limit))

    @admin.display(description="soft limit")
    def soft_use(self, obj: Budget) -> str:
        return self._use(obj.current_spent, obj.soft_limit)

    @admin.display(description="hard limit")
    def hard_use(self, obj: Budget) -> str:
        return self._use(obj.current_spent, obj.hard_limit)

    @admin.display(description="status")
    def status(self, obj: Budget) -> str:
        if obj.hard_limit is not None and obj.current_spent >= obj.hard_limit:
            return _label("hard limit reached", "danger")
        if obj.soft_limit is not None and obj.current_spent >= obj.soft_limit:
            return _label("soft limit reached", "warning")
        return _label("ok", "success")


# -- daily rollups and the dashboard --------------------------------------------------------------


@admin.register(LLMUsageDaily)
class LLMUsageDailyAdmin(ReadOnlyAdmin):
    """The daily rollups, read-only; also home of the cost dashboard (``dashboard/``)."""

    change_list_template = "admin/llm/llmusagedaily/change_list.html"
    list_display = ["date", "provider", "model", "user_display", "feature_display", "requests", "failures",
                    "cache_hits", "total_tokens", "cost_display", "saved_display", "avg_latency"]
    list_filter = [("date", RangeDateFilter), ProviderFilter, ModelTextFilter, UserFilter, FeatureTextFilter]
    list_filter_submit = True
    ordering = ["-date"]
    sortable_by = ["date"]
    actions = None
    exclude = ["latency_histogram"]

    @admin.display(description="user")
    def user_display(self, obj: Any) -> str:
        return _user_label(obj)

    @admin.display(description="feature")
    def feature_display(self, obj: LLMUsageDaily) -> str:
        return obj.feature or "—"

    @admin.display(description="cost")
    def cost_display(self, obj: LLMUsageDaily) -> str:
        return money(obj.cost)

    @admin.display(description="saved")
    def saved_display(self, obj: LLMUsageDaily) -> str:
        return money(obj.saved_cost)

    @admin.display(description="avg latency")
    def avg_latency(self, obj: LLMUsageDaily) -> str:
        return f"{obj.latency_ms_sum / obj.requests:,.0f} ms" if obj.requests else "—"

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("dashboard/", view, name="llm_dashboard"), *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not can_view_dashboard(request):
            raise PermissionDenied
        # Imported here: the view module imports this one (filters, formatting).
        from .views_dashboard import dashboard_response

        log_admin = self.admin_site._registry.get(LLMRequest)
        return dashboard_response(request, admin_site=self.admin_site,
                                  raw_log=bool(log_admin and log_admin.has_view_permission(request)))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}),
                         "dashboard_url": reverse("admin:llm_dashboard") if can_view_dashboard(request) else ""}
        return super().changelist_view(request, extra_context)
