"""The daily-usage rollups admin, home of the cost dashboard view."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path
from unfold.contrib.filters.admin import (
    RangeDateFilter,
)

from apps.llm.admin.base import (
    DashboardLinkMixin,
    ReadOnlyAdmin,
    can_view_dashboard,
    user_of,
)
from apps.llm.admin.dashboard import dashboard_response
from apps.llm.admin.filters import (
    FeatureTextFilter,
    ModelTextFilter,
    ProviderFilter,
    UserFilter,
)
from apps.llm.admin.formatting import money, money_column
from apps.llm.models import COUNTERS, LLMRequest, LLMUsageDaily

#: The money counters of a rollup row, shown through ``money`` on its detail page (never raw).
MONEY_COUNTERS = {
    "cost": "cost_money",
    "provider_cost": "provider_cost_money",
    "saved_cost": "saved_cost_money",
    "reported_cost": "reported_cost_money",
    "reported_provider_cost": "reported_provider_cost_money",
}


@admin.register(LLMUsageDaily)
class LLMUsageDailyAdmin(DashboardLinkMixin, ReadOnlyAdmin):
    """The daily rollups, read-only; also home of the cost dashboard (``dashboard/``)."""

    change_list_template = "admin/llm/llmusagedaily/change_list.html"
    list_display = [
        "date",
        "provider",
        "model",
        "user_display",
        "feature_display",
        "requests",
        "failures",
        "refusals",
        "cache_hits",
        "total_tokens",
        "cost_display",
        "saved_display",
        "avg_latency",
    ]
    list_filter = [("date", RangeDateFilter), ProviderFilter, ModelTextFilter, UserFilter, FeatureTextFilter]
    list_filter_submit = True
    ordering = ["-date"]
    sortable_by = ["date"]
    actions = None
    fields = ["date", "provider", "model", "user", "feature", *(MONEY_COUNTERS.get(c, c) for c in COUNTERS)]
    readonly_fields = fields

    cost_money = money_column("cost", "our cost")
    provider_cost_money = money_column("provider_cost", "provider's cost (where reported)")
    saved_cost_money = money_column("saved_cost", "saved by the cache")
    reported_cost_money = money_column("reported_cost", "our cost of the calls the provider priced")
    reported_provider_cost_money = money_column("reported_provider_cost", "the provider's cost of those calls")

    @admin.display(description="user")
    def user_display(self, obj: Any) -> str:
        return user_of(obj)

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
        log_admin = self.admin_site._registry.get(LLMRequest)
        return dashboard_response(
            request, admin_site=self.admin_site, raw_log=bool(log_admin and log_admin.has_view_permission(request))
        )
