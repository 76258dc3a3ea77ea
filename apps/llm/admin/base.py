"""What the LLM admins share: read-only changelists that never count a large table in full."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.functional import cached_property
from unfold.admin import ModelAdmin


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


class DashboardLinkMixin:
    """Gives a changelist's template ``dashboard_url``: the cost dashboard, for those who may see it."""

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        link = reverse("admin:llm_dashboard") if can_view_dashboard(request) else ""
        return super().changelist_view(request, {**(extra_context or {}), "dashboard_url": link})  # type: ignore[misc]
