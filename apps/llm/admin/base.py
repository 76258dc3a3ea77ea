"""What the LLM admins share: read-only changelists that never count a large table in full."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import reverse
from django.utils.functional import cached_property
from unfold.admin import ModelAdmin

from apps.llm.dashboard.filters import MAX_DATE, MIN_DATE, QueryValueError, check_query_value, shown_value


def can_view_dashboard(request: HttpRequest) -> bool:
    """Who sees the dashboard (and its sidebar link): staff allowed to view the daily rollups."""
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm("llm.view_llmusagedaily"))


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``exact_limit`` rows, beyond that trusts the planner.

    Unfiltered, the count is ``pg_class.reltuples`` (kept by ANALYZE/autovacuum): no query on
    the table at all. Filtered, at most ``exact_limit + 1`` matching rows are counted, then the
    planner's estimate (EXPLAIN) takes over. Pages stop at ``max_pages``: deeper OFFSETs would
    walk millions of index entries; filters or the date drill-down get there instead.
    """

    object_list: QuerySet[Any]
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


def user_of(obj: Any) -> str:
    """The row's user; the id alone when the user is gone (the log keeps no constraint)."""
    if obj.user_id is None:
        return "—"
    return str(obj.user) if obj.user else f"#{obj.user_id}"


def warn_once(request: HttpRequest, text: str) -> None:
    """A warning message on the page, once per request however often the filters are built."""
    shown = request.__dict__.setdefault("_llm_admin_warnings", set())
    if text not in shown:
        shown.add(text)
        messages.warning(request, text)


def querystring_problems(query: QueryDict, date_hierarchy: str | None = None) -> dict[str, str]:
    """The parameters of a changelist's querystring no filter can use, each with the reason.

    Every name and value passes ``check_query_value`` (the dashboard's check); the date
    drill-down's ``<field>__year/__month/__day`` must make a day of ``MIN_DATE..MAX_DATE``
    (Django turns a year of 10**20 into an OverflowError, a 500).
    """
    problems: dict[str, str] = {}
    for name in query:
        try:
            check_query_value(name)
            for value in query.getlist(name):
                check_query_value(value)
        except QueryValueError as error:
            problems[name] = str(error)
    if date_hierarchy:
        parts = {part: f"{date_hierarchy}__{part}" for part in ("year", "month", "day")}
        given = {part: str(query[name]) for part, name in parts.items() if name in query and name not in problems}
        problem = _drill_down_problem(given)
        if problem:
            problems.update({name: problem for part, name in parts.items() if part in given})
    return problems


def _drill_down_problem(parts: Mapping[str, str]) -> str | None:
    if not parts:
        return None
    if not all(v.isascii() and v.isdigit() and len(v) <= 4 for v in parts.values()):
        return "the year, month and day must be numbers"
    try:
        day = date(int(parts.get("year", MIN_DATE.year)), int(parts.get("month", 1)), int(parts.get("day", 1)))
    except ValueError as error:
        return f"no such date ({error})"
    if not MIN_DATE <= day <= MAX_DATE:
        return f"the dates go from {MIN_DATE.year} to {MAX_DATE.year}"
    return None


class QuerystringGuard:
    """A changelist whose querystring passes ``querystring_problems`` before any filter reads it.

    Stock list filters (choices, related fields, all values) and the search hand their value to
    the database as it came: a NUL character there failed the query (a DataError, a 500). A
    parameter that fails is dropped: the page is shown without it (a redirect, so the address
    says what is applied), with a message naming it. Mixed into every admin of the project.
    """

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        problems = querystring_problems(request.GET, getattr(self, "date_hierarchy", None))
        if problems:
            query = request.GET.copy()
            for name, problem in problems.items():
                del query[name]
                messages.warning(request, f"The filter “{shown_value(name)}” was ignored: {problem}.")
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}" if query else request.path)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


class ReadOnlyAdmin(QuerystringGuard, ModelAdmin):
    """For records the application writes: viewing only (they are the audit trail).

    They grow with traffic, so the changelist never counts them in full: no facet counts, no
    total next to the filtered count, an estimated page count.
    """

    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    list_select_related = ["user"]
    # Unfold's list template reads this for every row; missing, each read is a failed attribute
    # lookup that Django's template engine follows with dir() of the admin (~0.15 ms, 200 a page).
    list_sections: list[Any] = []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DashboardLinkMixin:
    """Gives a changelist's template ``dashboard_url``: the cost dashboard, for those who may see it."""

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        link = reverse("admin:llm_dashboard") if can_view_dashboard(request) else ""
        return super().changelist_view(request, {**(extra_context or {}), "dashboard_url": link})  # type: ignore[misc]
